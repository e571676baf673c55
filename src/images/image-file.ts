/**
 * CRIU image files: a u32 common magic, a u32 image magic, then entries each
 * prefixed by a u32 length (little-endian, as CRIU writes them on x86-64).
 * Every problem is an ImageError naming the file and the byte offset.
 */
import { bigOfLong } from '../long';
import { FileRefused, readBoundedFile, readFileRange } from '../files';
import { ImageError } from '../errors';

export const COMMON_MAGIC = 0x54564319;
/** First magic of CRIU's service images (inventory, stats, ...). */
export const SERVICE_MAGIC = 0x55105940;
export const MAGIC = {
  stats: 0x57093306,
  pstree: 0x50273030,
  mm: 0x57492820,
  files: 0x56303138,
  memfd: 0x48453499,
  pagemap: 0x56084025,
  tcpStream: 0x51465506,
  mnts: 0x55563928,
} as const;

/**
 * Bounds on what one image may make the reader do. Larger than any image of
 * the kinds read here (mm images hold at most vm.max_map_count VMAs, a few MB).
 */
export interface ReadLimits {
  maxBytes: number;
  maxEntries: number;
}
export const DEFAULT_LIMITS: ReadLimits = { maxBytes: 64 * 1024 * 1024, maxEntries: 1_000_000 };

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

/** A 64-bit field of a CRIU image (protobufjs gives Long) as a bigint; absent is 0. */
export const big = bigOfLong;

/** Runs a read of a checkpoint file (see files.ts); every refusal and failure becomes an ImageError naming it. */
function asImageRead<T>(path: string, read: () => T, maxBytes = Infinity): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof FileRefused) {
      throw new ImageError(
        path,
        0,
        err.why === 'not-regular' ? 'not a regular file' : `${err.size} bytes is larger than any image of this kind (limit ${maxBytes})`,
      );
    }
    const code = (err as NodeJS.ErrnoException).code;
    throw new ImageError(path, 0, code === 'ELOOP' ? 'cannot read: a symlink (not followed)' : `cannot read: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** `length` bytes at `position` of a raw image (pages-N.img); fewer at its end. */
export function readImageRange(path: string, position: number, length: number): Buffer {
  return asImageRead(path, () => readFileRange(path, position, length));
}

/** Decodes every entry of `path`; `decode` turns one entry's bytes into a message. */
export function readEntries<T>(
  path: string,
  magic: number,
  decode: (bytes: Uint8Array) => T,
  first = COMMON_MAGIC,
  limits: Partial<ReadLimits> = {},
): T[] {
  const l = { ...DEFAULT_LIMITS, ...limits };
  return decodeEntries(
    path,
    asImageRead(path, () => readBoundedFile(path, l.maxBytes), l.maxBytes),
    magic,
    decode,
    first,
    l.maxEntries,
  );
}

export function decodeEntries<T>(
  path: string,
  buf: Buffer,
  magic: number,
  decode: (bytes: Uint8Array) => T,
  first = COMMON_MAGIC,
  maxEntries = DEFAULT_LIMITS.maxEntries,
): T[] {
  if (buf.length < 8) throw new ImageError(path, 0, `truncated: ${buf.length} bytes, a CRIU image starts with an 8-byte magic header`);
  const common = buf.readUInt32LE(0);
  if (common !== first) {
    // the bytes are not echoed: the file may be anything (another user's secret)
    throw new ImageError(path, 0, `not a CRIU image: no magic ${hex(first)} at offset 0`);
  }
  const kind = buf.readUInt32LE(4);
  if (kind !== magic) {
    throw new ImageError(path, 4, `wrong kind of CRIU image: magic ${hex(kind)} at offset 4, expected ${hex(magic)}`);
  }
  const out: T[] = [];
  let off = 8;
  while (off < buf.length) {
    if (buf.length - off < 4)
      throw new ImageError(path, off, `truncated: ${buf.length - off} byte(s) where an entry length (4 bytes) starts`);
    if (out.length >= maxEntries) throw new ImageError(path, off, `more than ${maxEntries} entries`);
    const len = buf.readUInt32LE(off);
    if (len > buf.length - off - 4) {
      throw new ImageError(path, off, `truncated: entry at offset ${off} claims ${len} bytes, ${buf.length - off - 4} left`);
    }
    try {
      out.push(decode(buf.subarray(off + 4, off + 4 + len)));
    } catch (err) {
      throw new ImageError(path, off, `corrupt entry at offset ${off} (${len} bytes): ${(err as Error).message}`, { cause: err });
    }
    off += 4 + len;
  }
  return out;
}
