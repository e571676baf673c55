/**
 * Who may say what on a CURVE endpoint: every request must be sealed by an
 * allow-listed key (transport/seal.ts), and a key with scopes may only act on
 * the sessions and trees they name. A status query is answered with only the
 * sessions and trees the key may act on. IPC endpoints are guarded by their
 * 0700 directory instead.
 */
import { BadFrameError, ForbiddenError, type PartialAddress } from '../errors';
import { type DecodedRequest, decodeRequest } from '../protocol/codec';
import type { CurveServer } from './curve';
import { type Scope, permits } from './allow-list';
import type { SealRefusal, SealVerifier } from './seal';

const SEAL_REFUSALS: Record<SealRefusal, string> = {
  mac: 'the seal does not verify against its client key',
  connection: 'the seal was not made by the key that made this connection (a seal is bound to its connection)',
  stale: "the seal is dated more than 5 minutes from the coordinator's clock",
  replayed: 'the seal was already used (a seal is single-use)',
};

const forbidden = (reason: string, address: PartialAddress | null = null) => new ForbiddenError(reason, address);

function addressOf(req: DecodedRequest): PartialAddress | null {
  if (req.type === 'event')
    return { session: req.event.session, tree: req.event.tree, action: req.event.action, attempt: req.event.attempt };
  if (req.type === 'open') return { session: req.session, tree: '', action: 'unknown', attempt: req.attempt };
  return null;
}

/**
 * The request inside a seal, once the seal and the key's scopes allow it, and
 * those scopes (null: an operator's key, which sees everything); throws
 * FrameError (E_FORBIDDEN) otherwise.
 */
export function openSealed(
  req: DecodedRequest,
  curve: CurveServer,
  verifier: SealVerifier,
  routingId: string,
  nowMs: number,
): { inner: DecodedRequest; scopes: Scope[] | null } {
  if (req.type !== 'sealed') {
    throw forbidden('requests on a CURVE endpoint must be sealed with the client key (STAGEGATE_CURVE_CLIENT)', addressOf(req));
  }
  const checked = verifier.verify(req, routingId, nowMs);
  if ('refused' in checked) throw forbidden(SEAL_REFUSALS[checked.refused]);
  const key = checked.key;
  const scopes = curve.allow.get(key);
  if (scopes === undefined) throw forbidden(`client key ${key} is not in the allow-list`);
  const inner = decodeRequest(req.request);
  if (inner.type === 'sealed') throw new BadFrameError('a sealed request holds another sealed request', null);
  const address = addressOf(inner);
  if (inner.type === 'event' && !permits(scopes, inner.event.session, inner.event.tree)) {
    throw forbidden(`client key ${key} may not act on session ${inner.event.session} tree ${inner.event.tree}`, address);
  }
  if (inner.type === 'open' && !permits(scopes, inner.session, null)) {
    throw forbidden(`client key ${key} may not open session ${inner.session} (needs the scope ${inner.session}/*)`, address);
  }
  return { inner, scopes };
}
