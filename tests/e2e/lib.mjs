// Helpers for the end-to-end and interop tests: start the real `cardgate
// serve` on an ephemeral loopback port, drive `cardgate trigger` and
// `cardgate cards`, and speak raw HTTP/1.1 over net.Socket.
//
// Environment (set by tests/CMakeLists.txt): CARDGATE_BIN = the program,
// CG_SOURCE_DIR = the repository.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SRC =
  process.env.CG_SOURCE_DIR ||
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = process.env.CARDGATE_BIN || path.join(SRC, 'build', 'cardgate');

// The secrets every test server is configured with (a space in the key on
// purpose: keys are arbitrary console strings).
export const SECRETS = Object.freeze({
  token: 'e2e-verification-token-7Qp',
  key: 'e2e encrypt key 41',
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- temp dirs and child processes, all cleaned up on exit ----------------
const tmpDirs = new Set();
const children = new Set();

export function makeTmp(prefix = 'cg-e2e-') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.add(d);
  return d;
}

process.on('exit', () => {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
  for (const d of tmpDirs) {
    try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
  }
});

// Environment for a child: ours without any LARK_* variables, plus the
// secrets given (null/undefined = leave that one unset).
function childEnv(secrets, extra = {}) {
  const env = { ...process.env };
  delete env.LARK_VERIFICATION_TOKEN;
  delete env.LARK_ENCRYPT_KEY;
  if (secrets?.token) env.LARK_VERIFICATION_TOKEN = secrets.token;
  if (secrets?.key) env.LARK_ENCRYPT_KEY = secrets.key;
  return { ...env, ...extra };
}

const LISTENING = /listening on http:\/\/([0-9.]+):(\d+)/;

// Starts `cardgate serve --port 0 --db <db> ...args` and waits until it
// prints its listening line. Returns a handle:
//   { host, port, base, cardUrl, eventUrl, db, proc, stdout(), stderr(),
//     stop(signal) → {code, signal} }
export async function startServe({
  args = [],
  secrets = SECRETS,
  db,
  env = {},
  timeoutMs = 15000,
} = {}) {
  const dbPath = db || path.join(makeTmp(), 'cg.db');
  const proc = spawn(BIN, ['serve', '--port', '0', '--db', dbPath, ...args], {
    env: childEnv(secrets, env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let out = '';
  let err = '';
  let exited = null;
  const exitP = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      exited = { code, signal };
      children.delete(proc);
      resolve(exited);
    });
  });
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { err += d; });
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`cardgate serve did not print its listening line within ${timeoutMs} ms\nstdout:\n${out}\nstderr:\n${err}`));
    }, timeoutMs);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(LISTENING);
      if (m) {
        clearTimeout(timer);
        resolve({ host: m[1], port: Number(m[2]) });
      }
    });
    exitP.then((e) => {
      clearTimeout(timer);
      reject(new Error(`cardgate serve exited (${JSON.stringify(e)}) before listening\nstdout:\n${out}\nstderr:\n${err}`));
    });
  });
  const base = `http://${addr.host}:${addr.port}`;
  return {
    ...addr,
    base,
    cardUrl: `${base}/webhook/card`,
    eventUrl: `${base}/webhook/event`,
    db: dbPath,
    proc,
    stdout: () => out,
    stderr: () => err,
    exited: () => exited,
    async stop(signal = 'SIGTERM', waitMs = 10000) {
      if (exited) return exited;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), waitMs);
      const e = await exitP;
      clearTimeout(t);
      return e;
    },
  };
}

// Runs the program with args; never throws on a non-zero exit.
// → { code, signal, stdout, stderr }
export function run(args, { secrets = null, env = {}, timeoutMs = 20000, input } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, args, { env: childEnv(secrets, env), stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8');
    p.stderr.setEncoding('utf8');
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(t);
      children.delete(p);
      resolve({ code, signal, stdout, stderr });
    });
    if (input !== undefined) p.stdin.end(input);
    else p.stdin.end();
  });
}

// `cardgate trigger ...args` with the given secrets in the environment
// (default: the test secrets). Parses "HTTP <status>" and the answer.
// → { code, status, body (parsed JSON, or the text), text, stdout, stderr }
export async function trigger(args, { secrets = SECRETS, env = {} } = {}) {
  const r = await run(['trigger', ...args], { secrets, env });
  const m = r.stdout.match(/^HTTP (\d{3})\n?([\s\S]*)$/);
  let status = null;
  let text = '';
  let body = null;
  if (m) {
    status = Number(m[1]);
    text = m[2].replace(/\n$/, '');
    try { body = text === '' ? null : JSON.parse(text); } catch { body = text; }
  }
  return { ...r, status, body, text };
}

// `cardgate trigger --dry-run ...args` → { url, headers, body }.
export async function prepare(args, opts) {
  const r = await run(['trigger', '--dry-run', ...args], { secrets: SECRETS, ...opts });
  if (r.code !== 0) throw new Error(`trigger --dry-run ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

// `cardgate cards show ID --db DB --json` → the parsed card, or null when the
// command failed (e.g. no such card); the raw result is in .result.
export async function cardShow(db, id) {
  const r = await run(['cards', 'show', id, '--db', db, '--json']);
  if (r.code !== 0) return { card: null, result: r };
  return { card: JSON.parse(r.stdout), result: r };
}

// ---- raw HTTP --------------------------------------------------------------

// Serialises a prepared request ({url, headers, body}) as HTTP/1.1 bytes.
// host/port override the URL's; keepAlive false adds Connection: close.
export function requestBytes(prep, { keepAlive = false, host } = {}) {
  const u = new URL(prep.url);
  const body = Buffer.from(prep.body ?? '', 'utf8');
  const lines = [`${prep.method || 'POST'} ${u.pathname}${u.search} HTTP/1.1`, `Host: ${host || u.host}`];
  for (const [k, v] of Object.entries(prep.headers || {})) lines.push(`${k}: ${v}`);
  if (!Object.keys(prep.headers || {}).some((k) => k.toLowerCase() === 'content-length'))
    lines.push(`Content-Length: ${body.length}`);
  if (!keepAlive) lines.push('Connection: close');
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), body]);
}

// Points a prepared request at another base URL (keeps its path).
export function retarget(prep, base) {
  const u = new URL(prep.url);
  return { ...prep, url: new URL(u.pathname + u.search, base).toString() };
}

// Opens a connection; resolves with a helper once connected.
//   c.write(bytes), c.end(), c.destroy(),
//   c.done → Promise<{ data: Buffer, closed: true, error }> when the peer closes
//   c.data() → bytes received so far
export function connect(port, host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ port, host });
    const chunks = [];
    let error = null;
    let connected = false;
    const done = new Promise((res) => {
      sock.on('close', () => res({ data: Buffer.concat(chunks), closed: true, error }));
    });
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', (e) => { error = e; });
    sock.once('connect', () => {
      connected = true;
      resolve({
        sock,
        write: (b) => new Promise((r) => sock.write(b, () => r())),
        end: () => sock.end(),
        destroy: () => sock.destroy(),
        data: () => Buffer.concat(chunks),
        done,
      });
    });
    sock.once('error', (e) => { if (!connected) reject(e); });
  });
}

// Sends bytes on a fresh connection and collects everything until the peer
// closes (or timeoutMs passes: then .timedOut is true).
// → { data, responses (parsed), timedOut, ms }
export async function exchange(port, bytes, { host = '127.0.0.1', timeoutMs = 10000 } = {}) {
  const t0 = Date.now();
  const c = await connect(port, host);
  await c.write(bytes);
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; c.destroy(); }, timeoutMs);
  const { data } = await c.done;
  clearTimeout(timer);
  return { data, responses: parseResponses(data), timedOut, ms: Date.now() - t0 };
}

// Sends a prepared request to a server ({host, port}) and returns its one
// answer: { status, headers, body (parsed JSON or text), text }.
export async function send(server, prep) {
  const r = await exchange(server.port, requestBytes(prep), { host: server.host });
  if (r.responses.length !== 1)
    throw new Error(`expected one response, got ${r.responses.length}: ${JSON.stringify(r.data.toString('latin1'))}`);
  return r.responses[0];
}

// A simple request over a raw socket: { status, headers, body, text }.
export async function http(server, method, target, { headers = {}, body = '' } = {}) {
  return send(server, { method, url: `http://${server.host}:${server.port}${target}`, headers, body });
}

// Parses consecutive HTTP/1.1 responses (Content-Length, chunked, or
// until-close). Header names lower-cased; body parsed as JSON when it is.
export function parseResponses(buf) {
  const out = [];
  let off = 0;
  while (off < buf.length) {
    const end = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (end < 0) break;
    const head = buf.subarray(off, end).toString('latin1').split('\r\n');
    const m = head[0].match(/^HTTP\/1\.[01] (\d{3})(?: (.*))?$/);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(head[0])}`);
    const headers = {};
    for (const l of head.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    let p = end + 4;
    let bodyBuf;
    if (headers['transfer-encoding']?.toLowerCase().includes('chunked')) {
      const parts = [];
      for (;;) {
        const le = buf.indexOf('\r\n', p, 'latin1');
        if (le < 0) { p = buf.length; break; }
        const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
        p = le + 2;
        if (!size) { p += 2; break; }
        parts.push(buf.subarray(p, p + size));
        p += size + 2;
      }
      bodyBuf = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      bodyBuf = buf.subarray(p, p + n);
      p += n;
    } else if (m[1] === '204' || m[1] === '304' || m[1][0] === '1') {
      bodyBuf = Buffer.alloc(0);
    } else {
      bodyBuf = buf.subarray(p);
      p = buf.length;
    }
    const text = bodyBuf.toString('utf8');
    let body = text;
    try { body = text === '' ? null : JSON.parse(text); } catch { /* text */ }
    out.push({ status: Number(m[1]), reason: m[2] || '', headers, body, text });
    off = p;
  }
  return out;
}

// ---- card helpers ----------------------------------------------------------

// Every object in a JSON tree (depth-first).
export function* walk(j) {
  if (Array.isArray(j)) for (const x of j) yield* walk(x);
  else if (j && typeof j === 'object') {
    yield j;
    for (const v of Object.values(j)) yield* walk(v);
  }
}

// Tags of all components in a card ("button", "div", …).
export const tagsOf = (card) => [...walk(card)].map((o) => o.tag).filter(Boolean);

// The publish workflow's finished body (seed 002).
export const DONE_DIV = [
  { tag: 'div', fields: [{ is_short: false, text: { tag: 'lark_md', content: '已完成' } }] },
];

// The version a card has after its first click: a card the store has never
// seen is inserted already stepped (store.h: inserted with version 1), so the
// first decision is version 1 and every later transition adds one.
export const FIRST_VERSION = 1;

// A unique id for this run: om_<prefix>_<random>.
export const uid = (prefix = 'x') => `${prefix}_${Math.random().toString(36).slice(2, 10)}`;

// Starts one of the test fakes in tests/unit/ (fake_lark_openapi.mjs,
// fake_upstream.mjs): it prints {"port":N} first, then answers one JSON line
// per JSON command on stdin. → { port, base, cmd(obj) → answer, stop() }
export async function startFakeProcess(file) {
  const proc = spawn(process.execPath, [path.join(SRC, 'tests', 'unit', file)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  const lines = readline.createInterface({ input: proc.stdout });
  const queue = [];
  const waiters = [];
  lines.on('line', (l) => (waiters.length ? waiters.shift()(l) : queue.push(l)));
  const next = () => new Promise((r) => (queue.length ? r(queue.shift()) : waiters.push(r)));
  const { port } = JSON.parse(await next());
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    async cmd(c) {
      proc.stdin.write(JSON.stringify(c) + '\n');
      return JSON.parse(await next());
    },
    stop() { proc.stdin.end(); proc.kill(); },
  };
}

// ---- the emulator (`cardgate emulate`, docs/emulator.md) -------------------

// Starts `cardgate emulate --port 0 ...args` with the given secrets (LARK_*
// environment) and waits for its listening line. Returns
//   { base, port, proc, stdout(), stderr(), state(), post(path, body),
//     token() → a fresh tenant token, send(card) → message_id, stop() }
export async function startEmulator({ args = [], secrets = SECRETS, env = {}, timeoutMs = 15000 } = {}) {
  const proc = spawn(BIN, ['emulate', '--port', '0', ...args], {
    env: childEnv(secrets, env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let out = '';
  let err = '';
  const exitP = new Promise((resolve) => proc.on('exit', (code, signal) => { children.delete(proc); resolve({ code, signal }); }));
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { err += d; });
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cardgate emulate did not start\n${out}\n${err}`)), timeoutMs);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/[0-9.]+:(\d+)/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    exitP.then((e) => { clearTimeout(timer); reject(new Error(`cardgate emulate exited ${JSON.stringify(e)}\n${err}`)); });
  });
  const base = `http://127.0.0.1:${port}`;
  const request = async (method, p, body, headers = {}) => {
    const r = await fetch(base + p, {
      method,
      headers: { 'Content-Type': 'application/json', ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: r.status, headers: r.headers, body: json ?? text };
  };
  const emu = {
    base,
    port,
    proc,
    stdout: () => out,
    stderr: () => err,
    request,
    state: async () => (await request('GET', '/emulator/state')).body,
    post: (p, body) => request('POST', p, body ?? {}),
    async token(appId = env.LARK_APP_ID, appSecret = env.LARK_APP_SECRET) {
      const r = await request('POST', '/open-apis/auth/v3/tenant_access_token/internal', { app_id: appId, app_secret: appSecret });
      if (!r.body?.tenant_access_token) throw new Error(`no token: ${JSON.stringify(r.body)}`);
      return r.body.tenant_access_token;
    },
    async send(card, { token, receiveId = 'ou_e2e' } = {}) {
      const t = token || (await emu.token());
      const r = await request('POST', '/open-apis/im/v1/messages?receive_id_type=open_id',
        { receive_id: receiveId, msg_type: 'interactive', content: JSON.stringify(card) },
        { Authorization: `Bearer ${t}` });
      if (r.body?.code !== 0) throw new Error(`send failed: ${JSON.stringify(r.body)}`);
      return r.body.data.message_id;
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return exitP;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      const e = await exitP;
      clearTimeout(t);
      return e;
    },
  };
  return emu;
}

// ---- polling and a sidecar stub --------------------------------------------

// Polls fn (sync or async) every 50 ms until it returns something truthy,
// which is returned; throws after ms with `what` (and detail(), if given).
export async function waitFor(what, fn, { ms = 15000, detail } = {}) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end)
      throw new Error(`timed out after ${ms} ms waiting for ${what}${detail ? `\n${await detail()}` : ''}`);
    await sleep(50);
  }
}

// An in-process sidecar (docs/sidecar.md) on an ephemeral loopback port:
// answer(request JSON, n) → { answer (JSON object), delayMs?, status? },
// may be async. Every request is kept in .hits (parsed bodies, in order).
// → { url, hits, close() }
export async function startSidecarStub(answer) {
  const { createServer } = await import('node:http');
  const hits = [];
  const srv = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => { body += d; });
    req.on('end', async () => {
      let j = null;
      try { j = JSON.parse(body); } catch { /* kept as null */ }
      hits.push(j);
      const a = await answer(j, hits.length);
      if (a.delayMs) await sleep(a.delayMs);
      res.writeHead(a.status || 200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(a.answer));
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${srv.address().port}/`,
    hits,
    close: () => new Promise((r) => { srv.closeAllConnections?.(); srv.close(() => r()); }),
  };
}
