/**
 * Who may connect over CURVE and what each key may act on: the allow-list file
 * (`serve --allow`) and the scope checks every sealed request goes through.
 */
import { readFileSync } from 'node:fs';
import { decode } from 'z85';
import { UsageError } from '../errors';
import { KEY } from './keys';

/** What one client key may act on: session and tree name globs (`*` matches any run of characters). */
export interface Scope {
  session: string;
  tree: string;
}

/** z85 client public key -> its scopes; null: any session and tree (an operator's key). */
export type AllowList = Map<string, Scope[] | null>;

const GLOB = /^[A-Za-z0-9._:*-]{1,128}$/;

function globMatch(glob: string, name: string): boolean {
  const re = new RegExp(`^${glob.replace(/[.]/g, '\\.').replace(/\*/g, '.*')}$`);
  return re.test(name);
}

/**
 * Whether a key with `scopes` may act on `session` and `tree`; tree null asks
 * for the whole session (opening it), which only a scope with tree `*` grants.
 */
export function permits(scopes: Scope[] | null, session: string, tree: string | null): boolean {
  if (scopes === null) return true;
  return scopes.some((s) => globMatch(s.session, session) && (tree === null ? s.tree === '*' : globMatch(s.tree, tree)));
}

function parseScope(text: string): Scope | null {
  const [session, tree = '*', extra] = text.split('/');
  return extra === undefined && GLOB.test(session!) && GLOB.test(tree) ? { session: session!, tree } : null;
}

/**
 * The allow-list: one client per line, `KEY [SESSION[/TREE]]...`: a Z85 public
 * key, then the sessions (and trees) that key may act on, as globs; a key with
 * no scope may act on any. Blank lines and other lines starting with # are
 * ignored ('#' is also a Z85 character).
 */
export function readAllowList(path: string): AllowList {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read allow-list ${path}: ${(err as Error).message}`);
  }
  const keys: AllowList = new Map();
  text.split('\n').forEach((raw, i) => {
    const [key = '', ...scopeTexts] = raw.trim().split(/\s+/);
    const isKey = KEY.test(key) && decode(key)?.length === 32;
    if (!key || (!isKey && key.startsWith('#'))) return;
    if (!isKey) throw new UsageError(`${path}:${i + 1}: not a CURVE public key`);
    const scopes = scopeTexts.map((t) => {
      const scope = parseScope(t);
      if (!scope)
        throw new UsageError(
          `${path}:${i + 1}: scope '${t.slice(0, 140)}' is not SESSION or SESSION/TREE (names or globs of [A-Za-z0-9._:-*])`,
        );
      return scope;
    });
    const before = keys.get(key);
    keys.set(key, scopes.length === 0 || before === null ? null : [...(before ?? []), ...scopes]);
  });
  if (keys.size === 0) throw new UsageError(`${path}: the allow-list is empty`);
  return keys;
}

/** Whether a key with `scopes` may see `session` at all (some scope names it). */
export function touches(scopes: Scope[] | null, session: string): boolean {
  return scopes === null || scopes.some((s) => globMatch(s.session, session));
}
