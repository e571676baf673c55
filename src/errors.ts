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

export class StagegateError extends Error {
  override readonly name: string = 'StagegateError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class UsageError extends StagegateError {
  override readonly name = 'UsageError';
  constructor(message: string) {
    super(ErrorCodes.USAGE, message);
  }
}

export class ProtocolError extends StagegateError {
  override readonly name = 'ProtocolError';
}

export class EndpointError extends StagegateError {
  override readonly name = 'EndpointError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.ENDPOINT, message, options);
  }
}

export class CriuError extends StagegateError {
  override readonly name = 'CriuError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.CRIU, message, options);
  }
}

/** A CRIU image could not be read; `file` and `offset` say where. */
export class ImageError extends StagegateError {
  override readonly name = 'ImageError';
  constructor(
    readonly file: string,
    readonly offset: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(ErrorCodes.IMAGE, `${file}: ${message}`, options);
  }
}
