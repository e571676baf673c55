// z85 (ZeroMQ Base-85, the text form of CURVE keys) ships no types.
declare module 'z85' {
  export function encode(data: Uint8Array | Buffer): string | null;
  export function decode(text: string): Buffer | null;
}
