// src/engine/auth.ts on its own: the opcode -> permission table, wildcards, token hashes,
// and the Authenticator's lookups (the same over real sockets: security.test.ts).
import t from 'tap';
import { authorize, permissionOf, OP_PERMISSIONS, Authenticator, hashToken, parseTokenHash, generateToken, type AuthUser } from '../../src/engine/auth.ts';
import { Op, OP_REJECT } from '../../src/protocol.ts';

const bytes = (s: string) => new TextEncoder().encode(s);

async function login(auth: Authenticator, token: string, user = ''): Promise<AuthUser | undefined> {
  return auth.authenticate(user, bytes(token));
}

t.test('every request opcode has a permission; unknown opcodes need admin', async (t) => {
  for (const [name, code] of Object.entries(Op)) if (code < 0x80) t.ok(OP_PERMISSIONS.has(code), `${name} is mapped`);
  t.equal(permissionOf(Op.PUSH), 'push');
  t.equal(permissionOf(Op.SUBSCRIBE), 'pop');
  t.equal(permissionOf(Op.LENGTH), 'either');
  t.equal(permissionOf(OP_REJECT), 'none');
  t.equal(permissionOf(0x7e), 'admin');
});

t.test('authorize: push and pop patterns with *, admin, and no user at all', async (t) => {
  const auth = Authenticator.from({ users: [{ name: 'w', token: 'w-token', push: ['chat', 'jobs.*', '*-in'], pop: ['a*b*c'] }, { name: 'root', token: 'r-token', admin: true }] })!;
  const w = (await login(auth, 'w-token'))!;
  t.equal(w.name, 'w');
  const allowed = (op: number, q: string) => authorize(w, op, q);
  t.ok(allowed(Op.PUSH, 'chat'));
  t.notOk(allowed(Op.PUSH, 'chats'), 'a name without * matches only itself');
  t.ok(allowed(Op.PUSH_MANY, 'jobs.x.y'));
  t.ok(allowed(Op.PUSH, 'jobs.'), '* matches nothing too');
  t.notOk(allowed(Op.PUSH, 'jobs'));
  t.ok(allowed(Op.PUSH, 'mail-in'));
  t.notOk(allowed(Op.PUSH, 'x.y'), '. is not a wildcard');
  t.ok(allowed(Op.POP, 'abc') && allowed(Op.POP_MANY, 'a-b-c') && allowed(Op.SUBSCRIBE, 'aXbYc'));
  t.notOk(allowed(Op.POP, 'chat'), 'push does not give pop');
  t.ok(allowed(Op.LENGTH, 'chat') && allowed(Op.LENGTH, 'abc'));
  t.notOk(allowed(Op.LENGTH, 'zzz'));
  t.ok(allowed(Op.CREDIT, '') && allowed(Op.PING, ''));
  t.notOk(allowed(0x7e, 'chat'), 'unknown opcodes: admin only');
  const root = (await login(auth, 'r-token'))!;
  t.ok(authorize(root, 0x7e, 'anything') && authorize(root, Op.POP, 'x'));
  t.ok(authorize(undefined, Op.PUSH, 'x'), 'no auth configured');
  const regexChars = Authenticator.from({ users: [{ name: 'r', token: 'x', push: ['a.(b)+[c]'] }] })!;
  const r = (await login(regexChars, 'x'))!;
  t.ok(r.canPush('a.(b)+[c]'));
  t.notOk(r.canPush('a.bb[c]'), 'regex characters are literal');
});

t.test('Authenticator: plain tokens by token or by name; wrong, empty and cross-user tokens fail', async (t) => {
  const auth = Authenticator.from({ authToken: 'root-token', users: [{ name: 'a', token: 'a-token' }, { name: 'b', token: 'b-token' }] })!;
  t.equal(auth.size, 3);
  t.equal((await login(auth, 'a-token'))?.name, 'a');
  t.equal((await login(auth, 'b-token', 'b'))?.name, 'b');
  t.equal((await login(auth, 'root-token'))?.admin, true);
  t.equal(await login(auth, 'a-token', 'b'), undefined, "a's token is not b's");
  t.equal(await login(auth, 'nope'), undefined);
  t.equal(await login(auth, ''), undefined);
  t.equal(await login(auth, 'a-token', 'nobody'), undefined);
  t.notOk(auth.authenticate('', bytes('a-token')) instanceof Promise, 'plain tokens are checked synchronously');
  t.equal(Authenticator.from({}), undefined, 'no auth');
});

t.test('token hashes: made, parsed, checked (asynchronously), and cached after the first success', async (t) => {
  const hash = await hashToken('hashed-token', 10);
  t.match(hash, /^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  t.not(await hashToken('hashed-token', 10), hash, 'a new salt every time');
  t.match(parseTokenHash(hash), { ln: 10, r: 8, p: 1 });
  const auth = Authenticator.from({ users: [{ name: 'h', tokenHash: hash }, { name: 'p', token: 'plain' }] })!;
  const first = auth.authenticate('', bytes('hashed-token'));
  t.ok(first instanceof Promise, 'scrypt runs off the event loop');
  t.equal((await first)?.name, 'h');
  const again = auth.authenticate('', bytes('hashed-token'));
  t.notOk(again instanceof Promise, 'a token proven before is not hashed again');
  t.equal((again as AuthUser).name, 'h');
  t.equal((await login(auth, 'hashed-token', 'h'))?.name, 'h');
  t.equal(await login(auth, 'hashed-token', 'p'), undefined);
  t.equal(await login(auth, 'hashed-tokeN'), undefined);
  t.equal(await auth.authenticate('h', bytes('x'), () => false), undefined, 'a connection gone meanwhile costs no scrypt');
  for (const bad of ['', '$scrypt$ln=10,r=8,p=1$short$short', '$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo', `$scrypt$ln=25,r=8,p=1$${'A'.repeat(22)}$${'A'.repeat(43)}`, `$scrypt$ln=20,r=32,p=1$${'A'.repeat(22)}$${'A'.repeat(43)}`]) {
    t.throws(() => parseTokenHash(bad), { code: 'ERR_INVALID_ARGUMENT' }, bad || 'empty');
  }
  await t.rejects(hashToken('', 10), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(hashToken('x', 9), { code: 'ERR_INVALID_ARGUMENT' });
  t.match(generateToken(), /^[A-Za-z0-9_-]{43}$/);
});
