/**
 * Field validation shared by every input path. Returns a reason string when
 * the input is invalid, null when it is fine. Pure.
 */
import type { HoldAt } from './actions';
import type { Activator, MappingRef, StageEvent } from './model';

/** Session and tree names: what the hook accepts too (hooks/stagegate-hook.c). */
export const NAME_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const MAX_TREES = 65536;
export const MAX_ATTEMPT = 1_000_000;
const MAX_PID = 4_194_304; // PID_MAX_LIMIT on 64-bit Linux
const MAX_PATH = 4096;
const MAX_RESEND_MS = 60_000;
/** A host name as the hook reports it (gethostname: 64 here; a FQDN 253) */
const MAX_HOST = 255;
/** Free text a client sends (why a restore failed, criu's action name): kept in session state and abort reasons */
const MAX_REASON = 1024;
const MAX_ACTION_NAME = 64;
const hasControl = (s: string) => [...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);

export function validateName(what: string, value: string): string | null {
  return NAME_PATTERN.test(value) ? null : `${what} ${JSON.stringify(value.slice(0, 140))} is not 1-128 characters of [A-Za-z0-9._:-]`;
}

function inRange(what: string, v: number, min: number, max: number): string | null {
  return Number.isInteger(v) && v >= min && v <= max ? null : `${what} ${v} is outside ${min}..${max}`;
}

export function validateEvent(ev: StageEvent): string | null {
  return (
    validateName('session', ev.session) ??
    validateName('tree', ev.tree) ??
    inRange('expected_trees', ev.expectedTrees, 1, MAX_TREES) ??
    inRange('attempt', ev.attempt, 1, MAX_ATTEMPT) ??
    inRange('init_pid', ev.initPid, 0, MAX_PID) ??
    inRange('hook_pid', ev.hookPid, 0, MAX_PID) ??
    inRange('criu_pid', ev.criuPid, 0, MAX_PID) ??
    inRange('resend_ms', ev.resendMs ?? 0, 0, MAX_RESEND_MS) ??
    (ev.run ? validateName('run', ev.run) : null) ??
    (ev.commit ? validateName('commit', ev.commit) : null) ??
    (ev.imageDir.length > MAX_PATH || ev.imageDir.includes('\0') ? 'image_dir is not a valid path' : null) ??
    (ev.host.length > MAX_HOST || hasControl(ev.host) ? `host is not a host name of at most ${MAX_HOST} printable characters` : null) ??
    (ev.actionName.length > MAX_ACTION_NAME || hasControl(ev.actionName)
      ? `action_name is not at most ${MAX_ACTION_NAME} printable characters`
      : null) ??
    (ev.reason.length > MAX_REASON ? `reason is longer than ${MAX_REASON} characters` : null) ??
    (ev.action === 'pre-resume' && ev.initPid === 0 ? 'pre-resume without init_pid' : null)
  );
}

export function validateOpen(o: {
  session: string;
  expectedTrees: number;
  attempt: number;
  deadlineMs: number;
  manifest: MappingRef[];
}): string | null {
  return (
    validateName('session', o.session) ??
    inRange('expected_trees', o.expectedTrees, 1, MAX_TREES) ??
    inRange('attempt', o.attempt, 1, MAX_ATTEMPT) ??
    inRange('deadline_ms', o.deadlineMs, 0, 7 * 24 * 3600 * 1000) ??
    validateManifest(o.manifest)
  );
}

const MAX_MANIFEST_MAPPINGS = 65536;
const ADDRESS_LIMIT = 1n << 57n; // beyond any user address (5-level paging)

function validateManifest(ms: MappingRef[]): string | null {
  if (ms.length > MAX_MANIFEST_MAPPINGS) return `manifest has ${ms.length} mappings, more than ${MAX_MANIFEST_MAPPINGS}`;
  for (const m of ms) {
    const where = `manifest BO ${JSON.stringify(m.label.slice(0, 140))}`;
    const bad =
      validateName(`${where} id`, m.label) ??
      validateName(`${where} tree`, m.tree) ??
      inRange(`${where} pid`, m.pid, 1, MAX_PID) ??
      (m.size <= 0n || m.start % 4096n !== 0n || m.size % 4096n !== 0n || m.start + m.size > ADDRESS_LIMIT
        ? `${where}: mapping 0x${m.start.toString(16)}+${m.size} is not a page-aligned, non-empty user address range`
        : null);
    if (bad) return bad;
  }
  return null;
}

/** Parses an arrival barrier setting; null when unknown. */
export function parseHoldAt(v: string): HoldAt | null {
  return v === 'pre-restore' || v === 'none' ? v : null;
}

/** Parses an activator name; null when unknown. */
export function parseActivator(v: string): Activator | null {
  if (v === 'verify' || v === 'none' || v === 'kfd') return v;
  if (v.startsWith('exec:') && v.trim().length > 'exec:'.length && v.length <= 4096) return v as Activator;
  return null;
}
