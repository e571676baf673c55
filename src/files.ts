/**
 * Reading a file that is input, not trusted (a checkpoint's images, the
 * journal): only a regular file, never through a symlink, never blocking on a
 * FIFO or a device, and at most `maxBytes`.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/** Why a file was refused before it was read. */
export class FileRefused extends Error {
  constructor(
    readonly why: 'not-regular' | 'too-large',
    readonly size: number,
  ) {
    super(why === 'not-regular' ? 'not a regular file' : `${size} bytes`);
  }
}

/**
 * Reads up to `length` bytes at `position` of a regular file opened without
 * following a symlink or blocking; `maxSize` bounds the whole file. Throws
 * FileRefused, or the open/read error (ELOOP for a symlink, ENOENT, …).
 */
function readRegular(path: string, position: number, length: number | 'all', maxSize: number): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FileRefused('not-regular', st.size);
    if (st.size > maxSize) throw new FileRefused('too-large', st.size);
    const want = length === 'all' ? st.size : length;
    const buf = Buffer.alloc(Math.max(0, Math.min(want, st.size - position)));
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, position + off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/** The whole file, at most `maxBytes`. Throws FileRefused, or the open/read error (ELOOP for a symlink, ENOENT, …). */
export function readBoundedFile(path: string, maxBytes: number): Buffer {
  return readRegular(path, 0, 'all', maxBytes);
}

/** `length` bytes at `position` of a regular file of any size (same refusals as readBoundedFile); fewer at its end. */
export function readFileRange(path: string, position: number, length: number): Buffer {
  return readRegular(path, position, length, Number.MAX_SAFE_INTEGER);
}
