/**
 * What the subscribers of an XPUB socket have asked for, from the
 * subscription messages it reads (byte 1 or 0, then the topic prefix). With
 * XPUB's default verbosity a topic's subscribe message comes once, with its
 * first subscriber, and its unsubscribe once, when its last one leaves, so a
 * set of topics is enough. Lets the publisher skip encoding what no one would
 * receive. Bounded: past MAX_TOPICS it stops counting and wants everything.
 */
export const MAX_TOPICS = 4096;

export class Subscriptions {
  private readonly topics = new Set<string>();
  private overflowed = false;

  /** Applies one message read from the socket; anything but a (un)subscription is ignored. */
  apply(msg: Uint8Array): void {
    if (this.overflowed || msg.length === 0 || msg[0]! > 1) return;
    // latin1 keeps every byte as it came: a topic is compared byte for byte, like ZeroMQ does
    const topic = Buffer.from(msg.buffer, msg.byteOffset + 1, msg.length - 1).toString('latin1');
    if (msg[0] === 0) {
      this.topics.delete(topic);
    } else if (this.topics.size >= MAX_TOPICS && !this.topics.has(topic)) {
      this.overflowed = true;
      this.topics.clear();
    } else {
      this.topics.add(topic);
    }
  }

  /** Whether a subscriber has a prefix of `topic` (an ASCII session name). */
  wants(topic: string): boolean {
    if (this.overflowed) return true;
    for (const t of this.topics) if (topic.startsWith(t)) return true;
    return false;
  }
}
