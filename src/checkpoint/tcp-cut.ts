/**
 * The TCP cut check: whether a set of checkpoints describes a moment the job
 * was in, for every TCP connection whose two ends are both in the set.
 *
 * For each direction of a connection, sender S to receiver R, CRIU's images
 * hold S's send queue (outq_seq = write_seq is its end, outq_len bytes long,
 * the last unsq_len of them never sent) and R's rcv_nxt (inq_seq). After a
 * restore S re-sends its whole queue from snd_una and R drops what it already
 * has, so the cut is consistent exactly when
 *   snd_una(S) = outq_seq - outq_len  <=  rcv_nxt(R)   (nothing S counts as
 *       acknowledged is missing at R: else those bytes are lost), and
 *   rcv_nxt(R)  <=  outq_seq(S)                         (R received nothing S
 *       had not even written: else R holds bytes S will write anew).
 * Sequence numbers wrap at 2^32, so both are compared modulo 2^32.
 *
 * `checkCut` is pure; `readTcpEnds` reads one tree's images (bounded reads).
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { criu } from '../images/generated/criu';
import { MAGIC, decodeEntries, readEntries, readImageRange } from '../images/image-file';
import { ImageError } from '../errors';

/** One end of a TCP connection as a checkpoint holds it. */
export interface TcpEnd {
  tree: string;
  ino: number;
  src: string;
  dst: string;
  /** rcv_nxt */
  inqSeq: number;
  inqLen: number;
  /** write_seq: the end of the send queue */
  outqSeq: number;
  outqLen: number;
  unsqLen: number;
}

export interface Direction {
  from: string;
  to: string;
  /** sender's snd_una, snd_nxt and write_seq; receiver's rcv_nxt */
  sndUna: number;
  sndNxt: number;
  writeSeq: number;
  rcvNxt: number;
  /** bytes in flight at the cut (sent or queued, not yet received) */
  inFlight: number;
  problem: string;
}

export interface Connection {
  /** "tree a 10.0.0.1:7000 <-> tree b 10.0.0.2:41000" */
  name: string;
  directions: Direction[];
}

export interface CutReport {
  connections: Connection[];
  /** ends whose peer is not in the set (not checked) */
  outside: string[];
  violations: number;
}

const isLoopback = (a: string) => a.startsWith('127.') || a.startsWith('[0:0:0:0:0:0:0:1]');
const diff = (a: number, b: number) => ((a - b) | 0) as number; // a - b modulo 2^32, as a signed 32-bit number
const endName = (e: TcpEnd) => `tree ${e.tree} ${e.src}`;

function direction(s: TcpEnd, r: TcpEnd): Direction {
  const sndUna = (s.outqSeq - s.outqLen) >>> 0;
  const sndNxt = (s.outqSeq - s.unsqLen) >>> 0;
  let problem = '';
  if (diff(r.inqSeq, sndUna) < 0)
    problem = `${-diff(r.inqSeq, sndUna)} byte(s) lost: ${endName(s)} counts them as acknowledged, ${endName(r)} never received them`;
  else if (diff(r.inqSeq, s.outqSeq) > 0)
    problem = `${diff(r.inqSeq, s.outqSeq)} byte(s) received by ${endName(r)} that ${endName(s)} had not yet written (its checkpoint is older than the receiver's)`;
  return {
    from: endName(s),
    to: endName(r),
    sndUna,
    sndNxt,
    writeSeq: s.outqSeq,
    rcvNxt: r.inqSeq,
    inFlight: Math.max(0, diff(s.outqSeq, r.inqSeq)),
    problem,
  };
}

/** Pairs the ends of each connection and checks both directions (pure). */
export function checkCut(ends: TcpEnd[]): CutReport {
  const key = (src: string, dst: string) => `${src}>${dst}`;
  const byKey = new Map<string, TcpEnd[]>();
  for (const e of ends) byKey.set(key(e.src, e.dst), [...(byKey.get(key(e.src, e.dst)) ?? []), e]);
  const connections: Connection[] = [];
  const outside: string[] = [];
  const done = new Set<TcpEnd>();
  for (const e of [...ends].sort((a, b) => (key(a.src, a.dst) < key(b.src, b.dst) ? -1 : 1))) {
    if (done.has(e)) continue;
    const peers = byKey.get(key(e.dst, e.src)) ?? [];
    // a loopback connection never leaves its network namespace: its peer is in the same tree
    const p = peers.find((x) => !done.has(x) && x !== e && (!isLoopback(e.src) || x.tree === e.tree));
    done.add(e);
    if (!p) {
      outside.push(`${endName(e)} -> ${e.dst}: its peer is not in the set`);
      continue;
    }
    done.add(p);
    connections.push({ name: `${endName(e)} <-> ${endName(p)}`, directions: [direction(e, p), direction(p, e)] });
  }
  return { connections, outside, violations: connections.reduce((n, c) => n + c.directions.filter((d) => d.problem).length, 0) };
}

/** An address as CRIU stores it (words in network byte order) in text. */
export function addrText(words: number[], family: number, port: number): string {
  const bytes = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => bytes.writeUInt32LE(w >>> 0, i * 4));
  if (family === 2) return `${[...bytes.subarray(0, 4)].join('.')}:${port}`;
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return `[${groups.join(':')}]:${port}`;
}

const TCP_STREAM_HEAD = 4096; // the entry is a few dozen bytes; the queues that follow are not read

/** The TCP ends of one tree's checkpoint (those CRIU saved queues for: --tcp-established). */
export function readTcpEnds(dir: string, tree: string): TcpEnd[] {
  const filesPath = join(dir, 'files.img');
  if (!existsSync(filesPath)) return [];
  const ends: TcpEnd[] = [];
  for (const f of readEntries(filesPath, MAGIC.files, (b) => criu.FileEntry.decode(b))) {
    const sk = f.isk;
    if (!sk || sk.proto !== 6 || (sk.family !== 2 && sk.family !== 10)) continue;
    const ino = sk.ino ?? 0;
    const path = join(dir, `tcp-stream-${ino.toString(16)}.img`);
    if (!existsSync(path)) continue; // listening, or not established
    const head = readImageRange(path, 0, TCP_STREAM_HEAD);
    if (head.length < 12) throw new ImageError(path, 0, 'truncated: no entry');
    const len = head.readUInt32LE(8);
    if (len > head.length - 12) throw new ImageError(path, 8, `entry of ${len} bytes does not fit the first ${TCP_STREAM_HEAD}`);
    const [t] = decodeEntries(path, head.subarray(0, 12 + len), MAGIC.tcpStream, (b) => criu.TcpStreamEntry.decode(b));
    ends.push({
      tree,
      ino,
      src: addrText(sk.srcAddr ?? [], sk.family!, sk.srcPort ?? 0),
      dst: addrText(sk.dstAddr ?? [], sk.family!, sk.dstPort ?? 0),
      inqSeq: t!.inqSeq ?? 0,
      inqLen: t!.inqLen ?? 0,
      outqSeq: t!.outqSeq ?? 0,
      outqLen: t!.outqLen ?? 0,
      unsqLen: t!.unsqLen ?? 0,
    });
  }
  return ends;
}
