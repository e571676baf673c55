import { constants } from 'node:os';

/**
 * Typed errors with stable codes. Codes travel on the wire (Verdict.code,
 * GateDecision.code) and in logs; they never change meaning once published.
 */
export const ErrorCodes = {
  /** The session's deadline passed before every tree reached the gate. */
  DEADLINE: 'E_DEADLINE',
  /** A waiting hook stopped re-sending (killed?) before its gate answered it. */
  HOOK_LOST: 'E_HOOK_LOST',
  /** A tree's restore failed (criu exited non-zero) before release. */
  TREE_FAILED: 'E_TREE_FAILED',
  /** An event contradicts the session (tree count, attempt, ordering). */
  CONTRADICTION: 'E_CONTRADICTION',
  /** More distinct trees than the session expects. */
  TOO_MANY_TREES: 'E_TOO_MANY_TREES',
  /** An event from an older attempt than the session's current one. */
  STALE_ATTEMPT: 'E_STALE_ATTEMPT',
  /** The session was superseded by a newer attempt. */
  SUPERSEDED: 'E_SUPERSEDED',
  /** A field failed validation (names, counts, pids). */
  BAD_EVENT: 'E_BAD_EVENT',
  /** The frame could not be decoded as a Request of proto/stagegate.proto. */
  BAD_FRAME: 'E_BAD_FRAME',
  /** A CURVE client sent an unsealed request, a seal that does not verify, or acted outside its allow-list scopes. */
  FORBIDDEN: 'E_FORBIDDEN',
  /** The peer speaks a protocol version this daemon does not. */
  PROTOCOL_VERSION: 'E_PROTOCOL_VERSION',
  /**
   * The session has ended (released, completed or aborted) for this attempt: it
   * takes no new restore run, and nothing that arrives changes its outcome.
   */
  SESSION_CLOSED: 'E_SESSION_CLOSED',
  /** Another restore run (another criu) already owns this tree in this session and attempt. */
  RUN_CONFLICT: 'E_RUN_CONFLICT',
  /** An event of the other half of the cycle: a restore run for a session still dumping, or a dump run for a restore. */
  PHASE: 'E_PHASE',
  /** `restore --set`: a directory holds no commit record, or the set's records or files do not agree. */
  NOT_COMMITTED: 'E_NOT_COMMITTED',
  /** Configuration or command-line usage error. */
  USAGE: 'E_USAGE',
  /** criu could not be found or is not usable. */
  CRIU: 'E_CRIU',
  /** A ZeroMQ endpoint could not be bound or connected. */
  ENDPOINT: 'E_ENDPOINT',
  /** A restored mapping does not match its images or the other mappers of its BO. */
  VERIFY: 'E_VERIFY',
  /** The session's activator (exec, kfd) failed for a verified BO. */
  ACTIVATOR: 'E_ACTIVATOR',
  /** A CRIU image is missing, truncated, corrupt or of another kind. */
  IMAGE: 'E_IMAGE',
  /** The coordinator failed on one input (a bug): that input was dropped, every other session goes on. */
  INTERNAL: 'E_INTERNAL',
  /** The coordinator holds as many sessions as it may (serve --max-sessions). */
  LIMIT: 'E_LIMIT',
  /** The coordinator shut down without a journal: its open sessions are lost. */
  SHUTDOWN: 'E_SHUTDOWN',
  /** A native call failed (errno in `errno`). */
  NATIVE: 'E_NATIVE',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** True for a code this version knows (codes arrive from the wire as strings). */
export function isErrorCode(s: string): s is ErrorCode {
  return KNOWN.has(s);
}
const KNOWN: ReadonlySet<string> = new Set(Object.values(ErrorCodes));

/** A reply's code: empty (no error) or one this version knows; anything else is a bad frame. */
export function errorCodeOf(s: string): ErrorCode | '' {
  if (s === '' || isErrorCode(s)) return s;
  throw new BadFrameError(`unknown error code '${s.slice(0, 64)}'`, null);
}

type Options = { cause?: unknown };

/** The root of stagegate's errors: every one has a stable code. Throw a subclass, one per failure. */
export abstract class StagegateError extends Error {
  override readonly name: string = 'StagegateError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: Options,
  ) {
    super(message, options);
  }
}

/** A command line, configuration or setup problem (what the user must change). */
export class UsageError extends StagegateError {
  override readonly name = 'UsageError';
  constructor(message: string, options?: Options) {
    super(ErrorCodes.USAGE, message, options);
  }
}

/** A ZeroMQ endpoint could not be checked, bound, locked or reached. */
export class EndpointError extends StagegateError {
  override readonly name = 'EndpointError';
  constructor(message: string, options?: Options) {
    super(ErrorCodes.ENDPOINT, message, options);
  }
}

/** criu could not be found or is not usable. */
export class CriuError extends StagegateError {
  override readonly name = 'CriuError';
  constructor(message: string, options?: Options) {
    super(ErrorCodes.CRIU, message, options);
  }
}

/** A CRIU image could not be read; `file` and `offset` say where. */
export class ImageError extends StagegateError {
  override readonly name = 'ImageError';
  constructor(
    readonly file: string,
    readonly offset: number,
    /** what is wrong, without the file name */
    readonly detail: string,
    options?: Options,
  ) {
    super(ErrorCodes.IMAGE, `${file}: ${detail}`, options);
  }
}

/** A checkpoint set is not committed: a missing, torn or disagreeing commit record, or image files that changed since. */
export class NotCommittedError extends StagegateError {
  override readonly name = 'NotCommittedError';
  constructor(message: string, options?: Options) {
    super(ErrorCodes.NOT_COMMITTED, message, options);
  }
}

/** A restored tree could not be observed (its mappings are then unverified). */
export class VerifyError extends StagegateError {
  override readonly name = 'VerifyError';
  constructor(message: string, options?: Options) {
    super(ErrorCodes.VERIFY, message, options);
  }
}

/** An activator (exec, kfd) failed for a verified BO. */
export class ActivatorError extends StagegateError {
  override readonly name = 'ActivatorError';
  constructor(message: string, options?: Options) {
    super(ErrorCodes.ACTIVATOR, message, options);
  }
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([k, v]) => [v, k]));
/** e.g. 3 → 'ESRCH' */
export const errnoName = (errno: number): string => ERRNO_NAMES.get(errno) ?? `errno ${errno}`;

/** A native call failed: `syscall` and `errno` say which and why. */
export class NativeError extends StagegateError {
  override readonly name = 'NativeError';
  constructor(
    readonly syscall: string,
    readonly errno: number,
    message: string,
    options?: Options,
  ) {
    super(ErrorCodes.NATIVE, message, options);
  }
  /** e.g. 'ESRCH' */
  get errnoName(): string {
    return errnoName(this.errno);
  }
}

/** What a hook's fields were, as far as they could be read (to address an error reply). */
export interface PartialAddress {
  session: string;
  tree: string;
  action: import('./core/actions').ActionName;
  attempt: number;
}

/** A frame refused: `address`, when the frame named one, is where the error reply goes. */
export abstract class FrameError extends StagegateError {
  constructor(
    code: typeof ErrorCodes.BAD_FRAME | typeof ErrorCodes.PROTOCOL_VERSION | typeof ErrorCodes.FORBIDDEN,
    message: string,
    readonly address: PartialAddress | null,
    options?: Options,
  ) {
    super(code, message, options);
  }
}

/** Not a frame of proto/stagegate.proto, or one whose fields fail validation. */
export class BadFrameError extends FrameError {
  override readonly name = 'BadFrameError';
  constructor(message: string, address: PartialAddress | null, options?: Options) {
    super(ErrorCodes.BAD_FRAME, message, address, options);
  }
}

/** The peer speaks another protocol version. */
export class ProtocolVersionError extends FrameError {
  override readonly name = 'ProtocolVersionError';
  constructor(message: string, address: PartialAddress | null, options?: Options) {
    super(ErrorCodes.PROTOCOL_VERSION, message, address, options);
  }
}

/** A CURVE client's request is unsealed, its seal does not verify, or it acts outside its scopes. */
export class ForbiddenError extends FrameError {
  override readonly name = 'ForbiddenError';
  constructor(message: string, address: PartialAddress | null, options?: Options) {
    super(ErrorCodes.FORBIDDEN, message, address, options);
  }
}
