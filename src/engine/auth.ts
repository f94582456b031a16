// Who a connection is, and what it may do.
//
// Authentication: an Authenticator is built in each worker from the engine options
// `authToken` and `users` (already checked by src/options.ts). The handshake
// (src/engine/handshake.ts) hands it the user name and token of a connection's AUTH frame and
// gets back the user, or undefined. Tokens are only ever compared as digests, in constant
// time (crypto.timingSafeEqual over SHA-256, or scrypt for `tokenHash` users), are never
// logged and never appear in an error message.
//
// Authorization: authorize(user, op, queueName) is the one permission check. The session
// calls it for every request of a user who is not an admin, with the request's opcode and
// queue name; OP_PERMISSIONS says which permission each opcode needs. An opcode missing
// from that table needs admin: new operations are closed until someone decides.
//
// Token hashes (`tokenHash` in the users file) are PHC strings for scrypt:
//   $scrypt$ln=14,r=8,p=1$<salt>$<hash>
// ln = log2 of the scrypt cost N, r the block size, p the parallelism; salt (16 bytes) and
// hash (32 bytes) in base64 without padding. `turbomq hash-token` makes them.

import crypto from 'node:crypto';
import { Op, OP_REJECT } from '../protocol.ts';
import { TurboError } from '../errors.ts';
import type { UserEntry } from '../options.ts';

/** What an opcode needs: push or pop permission on the request's queue, either, nothing more than being logged in, or admin. */
export type Permission = 'push' | 'pop' | 'either' | 'none' | 'admin';

/**
 * Opcode -> permission. `none`: requests that name no queue and act only on what this
 * connection already holds (its own subscriptions and parked pops, which were checked when
 * they were made). RETURN puts messages back at the front of a topic the connection
 * consumed from: part of `pop` (a subscription closing), so a pop-only user can return
 * data to the queues it may pop from. Anything not listed needs admin.
 */
export const OP_PERMISSIONS: ReadonlyMap<number, Permission> = new Map<number, Permission>([
  [Op.HELLO, 'none'],
  [Op.PING, 'none'],
  [Op.AUTH, 'none'],
  [Op.PUSH, 'push'],
  [Op.PUSH_MANY, 'push'],
  [Op.POP, 'pop'],
  [Op.POP_MANY, 'pop'],
  [Op.SUBSCRIBE, 'pop'],
  [Op.RETURN, 'pop'],
  [Op.PUSH_EX, 'push'],
  [Op.PUSH_MANY_EX, 'push'],
  [Op.POP_LEASED, 'pop'],
  // SETTLE names only lease handles, which are bound to this connection's own leases.
  [Op.SETTLE, 'none'],
  [Op.CONFIGURE, 'either'],
  [Op.STATS, 'either'],
  // Operator requests: the whole broker's statistics, stopping it.
  [Op.SERVER_STATS, 'admin'],
  [Op.SHUTDOWN, 'admin'],
  [Op.LENGTH, 'either'],
  [Op.UNSUBSCRIBE, 'none'],
  [Op.CREDIT, 'none'],
  [Op.CANCEL, 'none'],
  // Not an opcode: a frame the decoder refused; it is answered with its error.
  [OP_REJECT, 'none'],
]);

/** OP_PERMISSIONS as an array by opcode (the session looks one up per request). */
const permissionByOp: readonly Permission[] = Array.from({ length: 256 }, (_, op) => OP_PERMISSIONS.get(op) ?? 'admin');

/** The permission opcode `op` needs (admin for an opcode OP_PERMISSIONS does not list). */
export function permissionOf(op: number): Permission {
  return permissionByOp[op & 0xff]!;
}

/** An authenticated user, as the session holds it. */
export interface AuthUser {
  readonly name: string;
  /** Allowed everything (the --auth-token user, or `"admin": true`). */
  readonly admin: boolean;
  /** May push to `queue` (checks the push patterns; cached). */
  canPush(queue: string): boolean;
  /** May pop from `queue`. */
  canPop(queue: string): boolean;
}

/**
 * Whether `user` may run opcode `op` on queue `queueName` ('' for requests that name no
 * queue). undefined (a broker without auth, or the embedded engine) may do everything.
 */
export function authorize(user: AuthUser | undefined, op: number, queueName: string): boolean {
  if (user === undefined || user.admin) return true;
  switch (permissionOf(op)) {
    case 'none': return true;
    case 'push': return user.canPush(queueName);
    case 'pop': return user.canPop(queueName);
    case 'either': return user.canPush(queueName) || user.canPop(queueName);
    default: return false;
  }
}

/** The error text for a refused request (names the user, never the token). */
export function forbiddenText(user: AuthUser, op: number, queueName: string): string {
  const need = permissionOf(op);
  if (need === 'admin') return `user ${JSON.stringify(user.name)} may not run this request (admin only)`;
  const what = need === 'either' ? 'push to or pop from' : need === 'push' ? 'push to' : 'pop from';
  return `user ${JSON.stringify(user.name)} may not ${what} queue ${JSON.stringify(queueName)}`;
}

// ── patterns ──────────────────────────────────────────────────────────────────────────

/** `*` matches any run of characters (none included); everything else is literal. */
function compilePatterns(patterns: readonly string[]): RegExp | undefined {
  if (patterns.length === 0) return undefined;
  const alternatives = patterns.map((p) => p.split('*').map((part) => part.replace(/[\\^$.|?+()[\]{}]/g, '\\$&')).join('[\\s\\S]*'));
  return new RegExp(`^(?:${alternatives.join('|')})$`, 'u');
}

/** Queue names a user was checked against, with the answers (bit 0 push, bit 1 pop). */
const DECISION_CACHE_SIZE = 4096;

class User implements AuthUser {
  readonly name: string;
  readonly admin: boolean;
  readonly #push: RegExp | undefined;
  readonly #pop: RegExp | undefined;
  readonly #decisions = new Map<string, number>();
  /** The last queue decided: most connections use one queue over and over. */
  #lastQueue: string | undefined;
  #lastBits = 0;

  constructor(entry: { name: string; admin?: boolean; push?: readonly string[]; pop?: readonly string[] }) {
    this.name = entry.name;
    this.admin = entry.admin === true;
    this.#push = compilePatterns(entry.push ?? []);
    this.#pop = compilePatterns(entry.pop ?? []);
  }

  #decide(queue: string): number {
    if (queue === this.#lastQueue) return this.#lastBits;
    let bits = this.#decisions.get(queue);
    if (bits === undefined) {
      bits = (this.#push?.test(queue) ? 1 : 0) | (this.#pop?.test(queue) ? 2 : 0);
      if (this.#decisions.size >= DECISION_CACHE_SIZE) this.#decisions.clear();
      this.#decisions.set(queue, bits);
    }
    this.#lastQueue = queue;
    this.#lastBits = bits;
    return bits;
  }

  canPush(queue: string): boolean {
    return this.admin || (this.#decide(queue) & 1) !== 0;
  }

  canPop(queue: string): boolean {
    return this.admin || (this.#decide(queue) & 2) !== 0;
  }
}

// ── token hashes ──────────────────────────────────────────────────────────────────────

export interface ScryptParams {
  /** log2 of the cost N. */
  ln: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

/** Default cost for new hashes: N = 2^14, r = 8 (16 MiB, about 80 ms on a 2024 laptop core). */
export const DEFAULT_SCRYPT_LN = 14;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** Hashes that would need more memory than this to check are refused when loading users. */
const MAX_SCRYPT_MEMORY_BYTES = 256 * 1024 * 1024;

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,88})\$([A-Za-z0-9+/]{16,88})$/;

/** Parses a tokenHash; throws ERR_INVALID_ARGUMENT (without echoing it) when it is not one. */
export function parseTokenHash(text: string): ScryptParams {
  const m = PHC.exec(text);
  const bad = (why: string) => new TurboError('ERR_INVALID_ARGUMENT', `tokenHash is not a scrypt hash (${why}); expected $scrypt$ln=N,r=N,p=N$salt$hash as printed by turbomq hash-token`);
  if (m === null) throw bad('wrong format');
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (ln < 1 || ln > 24 || r < 1 || p < 1) throw bad('ln must be 1..24, r and p at least 1');
  if (scryptMemoryBytes(ln, r) > MAX_SCRYPT_MEMORY_BYTES) throw bad(`checking it would need over ${MAX_SCRYPT_MEMORY_BYTES >> 20} MiB`);
  const salt = Buffer.from(m[4]!, 'base64');
  const hash = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8 || hash.length < 16) throw bad('salt or hash too short');
  return { ln, r, p, salt, hash };
}

function scryptMemoryBytes(ln: number, r: number): number {
  return 128 * 2 ** ln * r;
}

function scrypt(token: Uint8Array | string, salt: Buffer, bytes: number, ln: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    crypto.scrypt(token, salt, bytes, { N: 2 ** ln, r, p, maxmem: 2 * scryptMemoryBytes(ln, r) + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

const b64 = (bytes: Buffer) => bytes.toString('base64').replace(/=+$/, '');

/** A tokenHash for `token` (what `turbomq hash-token` prints). */
export async function hashToken(token: string, ln = DEFAULT_SCRYPT_LN): Promise<string> {
  if (token.length === 0) throw new TurboError('ERR_INVALID_ARGUMENT', 'the token is empty');
  if (!Number.isInteger(ln) || ln < 10 || ln > 20) throw new TurboError('ERR_INVALID_ARGUMENT', `cost must be from 10 to 20 (log2 of scrypt N), got ${ln}`);
  const salt = crypto.randomBytes(SALT_BYTES);
  const hash = await scrypt(token, salt, HASH_BYTES, ln, SCRYPT_R, SCRYPT_P);
  return `$scrypt$ln=${ln},r=${SCRYPT_R},p=${SCRYPT_P}$${b64(salt)}$${b64(hash)}`;
}

/** A new random token: 32 bytes, base64url (43 characters). */
export function generateToken(): string {
  return crypto.randomBytes(32).toString('base64url');
}

async function verifyTokenHash(token: Uint8Array, params: ScryptParams): Promise<boolean> {
  const key = await scrypt(token, params.salt, params.hash.length, params.ln, params.r, params.p);
  return crypto.timingSafeEqual(key, params.hash);
}

// ── the authenticator ─────────────────────────────────────────────────────────────────

interface Credential {
  user: User;
  /** SHA-256 of the token (`token` entries and --auth-token). */
  digest?: Buffer;
  /** The parsed tokenHash (`tokenHash` entries). */
  scrypt?: ScryptParams;
}

/** Tokens already proven against a tokenHash, by SHA-256: a reconnect costs no scrypt. */
const VERIFIED_CACHE_SIZE = 1024;

/** The name --auth-token's user has. */
export const AUTH_TOKEN_USER = 'admin';

function sha256(bytes: Uint8Array | string): Buffer {
  return crypto.createHash('sha256').update(bytes).digest();
}

export class Authenticator {
  readonly #byName = new Map<string, Credential>();
  readonly #digests: Credential[] = [];
  readonly #hashed: Credential[] = [];
  readonly #verified = new Map<string, Credential>();
  /** scrypt checks run one at a time per worker, so bad tokens cannot take the whole thread pool. */
  #scryptTail: Promise<unknown> = Promise.resolve();

  /** undefined when neither option is set: the broker has no auth. */
  static from(options: { authToken?: string | undefined; users?: readonly UserEntry[] | undefined }): Authenticator | undefined {
    if (options.authToken === undefined && options.users === undefined) return undefined;
    return new Authenticator(options.authToken, options.users ?? []);
  }

  private constructor(authToken: string | undefined, users: readonly UserEntry[]) {
    const entries: UserEntry[] = [...users];
    if (authToken !== undefined) {
      if (users.some((u) => u.name === AUTH_TOKEN_USER)) throw new TurboError('ERR_INVALID_ARGUMENT', `users: the name ${JSON.stringify(AUTH_TOKEN_USER)} is taken by authToken (--auth-token); rename that user`);
      entries.push({ name: AUTH_TOKEN_USER, token: authToken, admin: true });
    }
    const seenDigests = new Set<string>();
    for (const entry of entries) {
      const credential: Credential = { user: new User(entry) };
      if (entry.token !== undefined) {
        credential.digest = sha256(entry.token);
        const key = credential.digest.toString('hex');
        // Two users with one token: a token alone could not say who is connecting.
        if (seenDigests.has(key)) throw new TurboError('ERR_INVALID_ARGUMENT', `users: ${JSON.stringify(entry.name)} has the same token as another user`);
        seenDigests.add(key);
        this.#digests.push(credential);
      } else {
        try {
          credential.scrypt = parseTokenHash(entry.tokenHash!);
        } catch (err) {
          throw new TurboError('ERR_INVALID_ARGUMENT', `users: ${JSON.stringify(entry.name)}: ${(err as Error).message}`);
        }
        this.#hashed.push(credential);
      }
      this.#byName.set(entry.name, credential);
    }
  }

  /** How many users can log in. */
  get size(): number {
    return this.#byName.size;
  }

  /**
   * The user these credentials belong to, or undefined. `userName` '' means "find the user
   * by the token". Synchronous when no scrypt is needed (plain tokens, a token proven
   * before); otherwise a promise. `stillWanted` is asked before each scrypt run, so a
   * connection that closed while waiting costs nothing more.
   */
  authenticate(userName: string, token: Uint8Array, stillWanted: () => boolean = () => true): AuthUser | undefined | Promise<AuthUser | undefined> {
    if (token.length === 0) return undefined;
    const digest = sha256(token);
    if (userName !== '') {
      const credential = this.#byName.get(userName);
      if (credential === undefined) return undefined;
      if (credential.digest !== undefined) return crypto.timingSafeEqual(digest, credential.digest) ? credential.user : undefined;
      const proven = this.#verified.get(digest.toString('hex'));
      if (proven !== undefined) return proven === credential ? credential.user : undefined;
      return this.#checkHashed(token, digest, [credential], stillWanted);
    }
    // Every plain token is compared, match or not, so the time taken says nothing about which.
    let found: Credential | undefined;
    for (const credential of this.#digests) {
      if (crypto.timingSafeEqual(digest, credential.digest!) && found === undefined) found = credential;
    }
    if (found !== undefined) return found.user;
    const proven = this.#verified.get(digest.toString('hex'));
    if (proven !== undefined) return proven.user;
    if (this.#hashed.length === 0) return undefined;
    return this.#checkHashed(token, digest, this.#hashed, stillWanted);
  }

  #checkHashed(token: Uint8Array, digest: Buffer, candidates: readonly Credential[], stillWanted: () => boolean): Promise<AuthUser | undefined> {
    const copy = Uint8Array.from(token); // the caller's buffer may be reused
    const run = this.#scryptTail.then(async () => {
      for (const credential of candidates) {
        if (!stillWanted()) return undefined;
        if (await verifyTokenHash(copy, credential.scrypt!)) {
          if (this.#verified.size >= VERIFIED_CACHE_SIZE) this.#verified.delete(this.#verified.keys().next().value!);
          this.#verified.set(digest.toString('hex'), credential);
          return credential.user;
        }
      }
      return undefined;
    });
    this.#scryptTail = run.catch(() => undefined);
    return run;
  }
}
