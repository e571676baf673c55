/**
 * The commit record: what makes a committed checkpoint set recognisable from
 * its images alone. `stagegate dump` writes one into each tree's images
 * directory, and only after the coordinator committed the whole set; it names
 * the session, attempt and commit id, every member tree (and its host), and
 * each image file with its size and a digest, so that a missing or changed
 * file is found without asking anybody.
 *
 * Durability: every recorded image is fsync'd first, then the record is
 * written to a temporary name, fsync'd, renamed into place and the directory
 * fsync'd. A crash at any point leaves either no record (the set is not
 * committed) or a whole one; a record is never written for a set that was not
 * committed, since it is written only once the coordinator says so.
 *
 * Digests: metadata images are hashed whole; page images (pages-N.img, tens
 * of GB in a real checkpoint) only sampled (size, first and last MiB) unless
 * the full checksum is asked for.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync, readdirSync } from 'node:fs';
import { open, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readBoundedFile } from '../files';
import { ImageError, NotCommittedError } from '../errors';
import type { SetMember } from '../core/model';

export const RECORD_NAME = 'stagegate-commit.json';
export const RECORD_FORMAT = 'stagegate-commit/1';
const MAX_RECORD_BYTES = 16 * 1024 * 1024;
/** Image files one record may list (a real checkpoint has hundreds): a crafted record cannot make a check stat a million names. */
const MAX_RECORD_FILES = 100_000;
/** Page images are sampled this much at each end unless the full checksum is asked for. */
export const SAMPLE_BYTES = 1 << 20;

export type ChecksumMode = 'sampled' | 'full';

/** One tree of the set, as the coordinator's COMMIT names it. */
export type Member = SetMember;

export interface FileDigest {
  name: string;
  size: number;
  /** sha256 of the whole file, or of size + sampled ends ("sampled:" prefix) */
  sha256: string;
}

export interface CommitRecord {
  format: typeof RECORD_FORMAT;
  session: string;
  attempt: number;
  /** the same in every member's record: derived from session, attempt and the members */
  commit: string;
  tree: string;
  host: string;
  members: Member[];
  committedAt: string;
  checksum: ChecksumMode;
  files: FileDigest[];
  /** sha256 of the record without this field: a torn or edited record does not verify */
  digest: string;
}

/** A set's commit id: the same for every member, different for any other dump (runs are nonces). */
export function commitId(session: string, attempt: number, members: Member[]): string {
  const h = createHash('sha256');
  h.update(`stagegate commit v1\0${session}\0${attempt}\0`);
  for (const m of [...members].sort((a, b) => (a.tree < b.tree ? -1 : 1))) h.update(`${m.tree}\0${m.host}\0${m.run}\0`);
  return `c-${h.digest('hex').slice(0, 32)}`;
}

/** The files a record covers: CRIU's images and its dump statistics, not logs or what a restore adds. */
const covered = (name: string) => (name.endsWith('.img') || name === 'stats-dump') && !name.startsWith('.');
const isPages = (name: string) => /^pages-\d+\.img$/.test(name);

/**
 * `path` opened as a regular file, no symlink followed: its fd and size.
 * Images are read synchronously: hashing is this command's whole work at that
 * point (`dump` after criu, `check` and `restore --set` before it), and a
 * thread-pool round trip per open, stat, read and close made checking a
 * 16-tree set take a second (issue #11).
 */
function openImage(path: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    throw (err as NodeJS.ErrnoException).code === 'ELOOP' ? new ImageError(path, 0, 'a symlink (not followed)', { cause: err }) : err;
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new ImageError(path, 0, 'not a regular file');
  }
  return { fd, size: st.size };
}

/** An open image's digest: sha256 of it whole, or of a page image's size and both ends (sampled). */
function hashImage(path: string, name: string, fd: number, size: number, mode: ChecksumMode): string {
  const sampled = isPages(name) && mode === 'sampled' && size > 2 * SAMPLE_BYTES;
  const ranges = sampled
    ? [
        [0, SAMPLE_BYTES],
        [size - SAMPLE_BYTES, SAMPLE_BYTES],
      ]
    : [[0, size]];
  const h = createHash('sha256');
  if (sampled) h.update(`size ${size}\0`);
  const buf = Buffer.allocUnsafe(Math.max(1, Math.min(SAMPLE_BYTES, size)));
  for (const [start, len] of ranges) {
    for (let off = 0; off < len!;) {
      const got = readSync(fd, buf, 0, Math.min(buf.length, len! - off), start! + off);
      if (got === 0) throw new ImageError(path, start! + off, 'shorter than its size while hashing');
      h.update(buf.subarray(0, got));
      off += got;
    }
  }
  return `${sampled ? 'sampled:' : ''}${h.digest('hex')}`;
}

function digestFile(dir: string, name: string, mode: ChecksumMode): FileDigest {
  const path = join(dir, name);
  const { fd, size } = openImage(path);
  try {
    return { name, size, sha256: hashImage(path, name, fd, size, mode) };
  } finally {
    closeSync(fd);
  }
}

async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  await fh.sync().finally(() => fh.close());
}

/** Digests of every covered file of `dir`, by name (symlinks and other non-regular entries are refused), each on disk. */
export async function digestDir(dir: string, mode: ChecksumMode): Promise<FileDigest[]> {
  const names = readdirSync(dir).filter(covered).sort();
  if (names.length === 0) throw new ImageError(dir, 0, 'no CRIU images');
  const out = names.map((n) => digestFile(dir, n, mode));
  // the images must be on disk before a record that vouches for them: a few fsyncs at a time, each waits for the disk
  for (let i = 0; i < names.length; i += 16) await Promise.all(names.slice(i, i + 16).map((n) => fsyncFile(join(dir, n))));
  return out;
}

const digestOf = (r: Omit<CommitRecord, 'digest'>) => createHash('sha256').update(JSON.stringify(r)).digest('hex');

/** Writes `dir`'s commit record durably (see the top). */
export async function writeRecord(dir: string, r: Omit<CommitRecord, 'format' | 'files' | 'digest' | 'committedAt'>, mode: ChecksumMode) {
  const body: Omit<CommitRecord, 'digest'> = {
    format: RECORD_FORMAT,
    ...r,
    committedAt: new Date().toISOString(),
    checksum: mode,
    files: await digestDir(dir, mode),
  };
  const record: CommitRecord = { ...body, digest: digestOf(body) };
  const tmp = join(dir, `.${RECORD_NAME}.${process.pid}.tmp`);
  try {
    await writeFile(tmp, JSON.stringify(record, null, 1) + '\n', { flag: 'wx', mode: 0o644 });
    const fh = await open(tmp, constants.O_RDONLY);
    await fh.sync().finally(() => fh.close());
    await rename(tmp, join(dir, RECORD_NAME));
  } finally {
    await rm(tmp, { force: true });
  }
  const d = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  await d.sync().finally(() => d.close());
  return record;
}

const str = (v: unknown, max = 256): v is string => typeof v === 'string' && v.length <= max;
const NAME = /^[A-Za-z0-9._:-]{1,128}$/;

/** `dir`'s commit record, checked for shape and digest; a StagegateError (E_NOT_COMMITTED) when there is none or it does not verify. */
export function readRecord(dir: string): CommitRecord {
  const path = join(dir, RECORD_NAME);
  let raw: unknown;
  try {
    raw = JSON.parse(readBoundedFile(path, MAX_RECORD_BYTES).toString('utf8'));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no commit record: this checkpoint was never committed' : `unreadable commit record: ${e.message}`;
    throw new NotCommittedError(`${dir}: ${why}`);
  }
  const r = raw as CommitRecord;
  const bad = (why: string) => new NotCommittedError(`${path}: ${why}`);
  if (!r || typeof r !== 'object' || r.format !== RECORD_FORMAT) throw bad(`not a ${RECORD_FORMAT} record`);
  if (!NAME.test(String(r.session)) || !NAME.test(String(r.tree)) || !str(r.commit, 64) || !str(r.host) || !str(r.digest, 64))
    throw bad('malformed names');
  if (!Number.isInteger(r.attempt) || r.attempt < 1) throw bad('malformed attempt');
  if (!Array.isArray(r.members) || r.members.length < 1 || r.members.length > 65536) throw bad('malformed members');
  if (!r.members.every((m) => NAME.test(String(m?.tree)) && str(m.host) && str(m.run))) throw bad('malformed members');
  if (
    !Array.isArray(r.files) ||
    r.files.length > MAX_RECORD_FILES ||
    !r.files.every((f) => str(f?.name) && covered(f.name) && !f.name.includes('/') && Number.isSafeInteger(f.size) && str(f.sha256, 80))
  )
    throw bad('malformed file list');
  const { digest, ...body } = r;
  if (digestOf(body) !== digest) throw bad('its digest does not match: the record is torn or was edited');
  if (commitId(r.session, r.attempt, r.members) !== r.commit) throw bad('its commit id does not match its members');
  if (!r.members.some((m) => m.tree === r.tree)) throw bad(`tree ${r.tree} is not among its members`);
  return r;
}

/** Problems of `dir` against its record: missing, resized or changed image files. */
export async function checkFiles(dir: string, r: CommitRecord): Promise<string[]> {
  const problems: string[] = [];
  for (const f of r.files) {
    const path = join(dir, f.name);
    let image: { fd: number; size: number };
    try {
      image = openImage(path);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      problems.push(`${f.name}: ${e.code === 'ENOENT' ? 'missing' : err instanceof ImageError ? 'no longer a regular file' : e.message}`);
      continue;
    }
    try {
      // size first: a resized file is not hashed
      if (image.size !== f.size) problems.push(`${f.name}: ${image.size} bytes, committed with ${f.size}`);
      else if (hashImage(path, f.name, image.fd, image.size, r.checksum) !== f.sha256)
        problems.push(`${f.name}: content differs from the committed image`);
    } catch (err) {
      problems.push(`${f.name}: ${(err as Error).message}`);
    } finally {
      closeSync(image.fd);
    }
  }
  return problems;
}
