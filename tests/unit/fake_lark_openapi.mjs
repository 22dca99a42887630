// A fake Lark Open API for the unit tests of src/lib/net/https_client.c and
// src/lib/openapi/lark_api.c. Started by the test with `node`, it listens on
// 127.0.0.1 port 0 and prints {"port":N} as its first stdout line.
//
// Control: one JSON command per stdin line, one JSON answer per stdout line.
//   {"cmd":"reset"}                       forget tokens, counters, faults, config
//   {"cmd":"config", ...}                 merge into the config below
//   {"cmd":"revoke"}                      every token issued so far stops working
//   {"cmd":"fault","on":"api"|"token","mode":M,"count":N,...}
//                                         answer the next N such requests with M
//   {"cmd":"stats"}                       counters and the last API request
// The process exits when stdin closes (the test ended or died).
//
// Store (marketplace) apps: POST /open-apis/auth/v3/app_access_token
// {app_id, app_secret, app_ticket} (10012 unless app_ticket equals
// config.app_ticket), POST /open-apis/auth/v3/tenant_access_token
// {app_access_token, tenant_key} (tokens "t-fake-<tenant>-N", remembered per
// tenant), POST /open-apis/auth/v3/app_ticket/resend {app_id, app_secret}.
//
// Protocol facts follow ../shared/protocols/lark.md §4 and §9: token answers
// at top level with `expire` in seconds; a wrong secret is HTTP 200 + code
// 10014; token-invalid is 99991663 (HTTP 400 here by default, 200 on
// request); rate limiting is 99991400 with x-ogw-ratelimit-reset.
import http from 'node:http';
import readline from 'node:readline';

const DEFAULT_CONFIG = {
  app_id: 'cli_test',
  app_secret: 'secret_test',
  expire: 7200,
  token_delay_ms: 0,
  invalid_status: 400,
  app_ticket: 'tk-good',
};

let config;
let tokenSerial;
let validTokens;
let validAppTokens;
let tokenTenant;
let faults;
let stats;
let logSerial = 0;

function reset() {
  config = { ...DEFAULT_CONFIG };
  tokenSerial = 0;
  validTokens = new Set();
  validAppTokens = new Set();
  tokenTenant = new Map();
  faults = { api: [], token: [] };
  stats = {
    token_fetches: 0, api_calls: 0, routes: {}, last: null, auths: [],
    app_token_fetches: 0, store_tenant_fetches: 0, resends: 0,
    tenant_keys: [], auth_tenants: [], app_tickets: [],
  };
}
reset();

function send(res, status, obj, headers = {}) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  res.writeHead(status, {
    'Content-Type': typeof obj === 'string' ? 'text/plain' : 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Tt-Logid': `logid-${++logSerial}`,
    ...headers,
  });
  res.end(body);
}

function takeFault(kind) {
  const q = faults[kind];
  if (!q.length) return null;
  const f = q[0];
  if (--f.count <= 0) q.shift();
  return f;
}

// Answers a request with fault f. Returns true when it took the request.
function applyFault(f, req, res, normal) {
  switch (f.mode) {
    case 'html502':
      res.writeHead(502, { 'Content-Type': 'text/html' });
      res.end('<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\n');
      return true;
    case 'truncated':
      send(res, 200, '{"code":0,"msg":"success","data":{"message_id":"om_', {
        'Content-Type': 'application/json; charset=utf-8',
      });
      return true;
    case 'garbage':
      send(res, f.status || 200, 'definitely not json');
      return true;
    case 'cut':
      // Announces more than it sends, then drops the connection.
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 1000 });
      res.write('{"code":0,"msg":"su');
      setTimeout(() => res.socket && res.socket.destroy(), 20);
      return true;
    case 'huge': {
      const n = f.bytes || 4 * 1024 * 1024;
      const chunk = 'x'.repeat(64 * 1024);
      const headers = { 'Content-Type': 'application/json' };
      if (!f.chunked) headers['Content-Length'] = n + 29;
      res.writeHead(200, headers);
      res.write('{"code":0,"msg":"');
      let left = n;
      const pump = () => {
        while (left > 0) {
          const piece = chunk.slice(0, Math.min(left, chunk.length));
          left -= piece.length;
          if (!res.write(piece)) return res.once('drain', pump);
        }
        res.end('","data":{}}');
      };
      res.on('error', () => {});
      pump();
      return true;
    }
    case 'rate429':
    case 'rate400': {
      const headers = { 'x-ogw-ratelimit-limit': '50' };
      if (f.reset !== null) headers['x-ogw-ratelimit-reset'] = String(f.reset ?? 7);
      send(res, f.mode === 'rate429' ? 429 : 400,
        { code: 99991400, msg: 'request trigger frequency limit' }, headers);
      return true;
    }
    case 'token_invalid':
      send(res, config.invalid_status, {
        code: 99991663,
        msg: 'Invalid access token for authorization. Please make a request with token attached.',
      });
      return true;
    case 'code':
      send(res, f.status || 400, { code: f.code, msg: f.msg || 'fault', error: { log_id: 'x' } });
      return true;
    case 'slow':
      setTimeout(() => { if (!res.destroyed) normal(); }, f.ms || 2000);
      return true;
    case 'hang':
      return true; // never answers
    default:
      return false;
  }
}

function readBody(req) {
  return new Promise((resolve) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', () => resolve(Buffer.alloc(0)));
  });
}

function parseJson(buf) {
  try { return JSON.parse(buf.toString('utf8')); } catch { return undefined; }
}

function isCardString(s) {
  if (typeof s !== 'string') return false;
  const v = parseJson(Buffer.from(s));
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function handleToken(req, res, body) {
  stats.token_fetches++;
  const normal = () => {
    const b = parseJson(body) || {};
    if (b.app_id !== config.app_id || b.app_secret !== config.app_secret) {
      // lark.md §9.3: HTTP 200, non-zero code, no token.
      send(res, 200, { code: 10014, msg: 'app secret invalid' });
      return;
    }
    const token = `t-fake-${++tokenSerial}`;
    validTokens.add(token);
    send(res, 200, { code: 0, msg: 'ok', tenant_access_token: token, expire: config.expire });
  };
  const f = takeFault('token');
  if (f && applyFault(f, req, res, normal)) return;
  if (config.token_delay_ms) setTimeout(normal, config.token_delay_ms);
  else normal();
}

function handleStoreAuth(req, res, url, body) {
  const b = parseJson(body) || {};
  const p = url.pathname;
  const later = (fn) => (config.token_delay_ms ? setTimeout(fn, config.token_delay_ms) : fn());
  if (p === '/open-apis/auth/v3/app_ticket/resend') {
    stats.resends++;
    if (b.app_id !== config.app_id || b.app_secret !== config.app_secret) {
      send(res, 200, { code: 10014, msg: 'app secret invalid' });
      return;
    }
    send(res, 200, { code: 0, msg: 'ok' });
    return;
  }
  if (p === '/open-apis/auth/v3/app_access_token') {
    stats.app_token_fetches++;
    stats.app_tickets.push(b.app_ticket ?? null);
    later(() => {
      if (b.app_id !== config.app_id || b.app_secret !== config.app_secret) {
        send(res, 200, { code: 10014, msg: 'app secret invalid' });
      } else if (b.app_ticket !== config.app_ticket) {
        send(res, 200, { code: 10012, msg: 'app_ticket is invalid' });
      } else {
        const token = `a-fake-${++tokenSerial}`;
        validAppTokens.add(token);
        send(res, 200, { code: 0, msg: 'ok', app_access_token: token, expire: config.expire });
      }
    });
    return;
  }
  // tenant_access_token for a store app
  stats.store_tenant_fetches++;
  stats.tenant_keys.push(b.tenant_key ?? null);
  later(() => {
    if (!validAppTokens.has(b.app_access_token)) {
      send(res, 200, { code: 99991664, msg: 'invalid app_access_token' });
    } else if (typeof b.tenant_key !== 'string' || !b.tenant_key) {
      send(res, 200, { code: 10002, msg: 'tenant_key is required' });
    } else {
      const token = `t-fake-${b.tenant_key}-${++tokenSerial}`;
      validTokens.add(token);
      tokenTenant.set(token, b.tenant_key);
      send(res, 200, { code: 0, msg: 'ok', tenant_access_token: token, expire: config.expire });
    }
  });
}

function handleApi(req, res, url, body) {
  stats.api_calls++;
  const auth = req.headers.authorization || '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
  const route = `${req.method} ${url.pathname}`;
  stats.routes[route] = (stats.routes[route] || 0) + 1;
  stats.auths.push(token);
  stats.auth_tenants.push(tokenTenant.get(token) ?? null);
  stats.last = {
    method: req.method,
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    content_type: req.headers['content-type'] || '',
    token,
    body: parseJson(body) ?? body.toString('utf8'),
  };
  const normal = () => {
    if (!token) {
      send(res, 400, { code: 99991661, msg: 'Missing access token for authorization.' });
      return;
    }
    if (!validTokens.has(token)) {
      send(res, config.invalid_status, {
        code: 99991663,
        msg: 'Invalid access token for authorization. Please make a request with token attached.',
      });
      return;
    }
    const b = parseJson(body);
    const p = url.pathname;
    let m;
    if (req.method === 'POST' && p === '/open-apis/im/v1/messages') {
      const t = url.searchParams.get('receive_id_type');
      if (!t) {
        send(res, 400, {
          code: 99992402, msg: 'field validation failed',
          error: { field_violations: [{ field: 'receive_id_type', description: 'receive_id_type is required' }] },
        });
        return;
      }
      if (!b || !b.receive_id || b.msg_type !== 'interactive' || !isCardString(b.content)) {
        send(res, 400, { code: 230001, msg: 'invalid message content' });
        return;
      }
      send(res, 200, { code: 0, msg: 'success', data: { message_id: `om_fake_${stats.api_calls}`, msg_type: 'interactive', body: { content: b.content } } });
    } else if (req.method === 'POST' && (m = p.match(/^\/open-apis\/im\/v1\/messages\/([^/]+)\/reply$/))) {
      if (!b || b.msg_type !== 'interactive' || !isCardString(b.content)) {
        send(res, 400, { code: 230001, msg: 'invalid message content' });
        return;
      }
      send(res, 200, { code: 0, msg: 'success', data: { message_id: `om_reply_${stats.api_calls}`, parent_id: decodeURIComponent(m[1]) } });
    } else if (req.method === 'PATCH' && (m = p.match(/^\/open-apis\/im\/v1\/messages\/([^/]+)$/))) {
      if (!b || !isCardString(b.content)) {
        send(res, 400, { code: 230001, msg: 'invalid message content' });
        return;
      }
      send(res, 200, { code: 0, msg: 'success', data: {} });
    } else if (req.method === 'POST' && p === '/open-apis/interactive/v1/card/update') {
      if (!b || typeof b.token !== 'string' || !b.card || typeof b.card !== 'object' || Array.isArray(b.card)) {
        send(res, 400, { code: 300020, msg: 'invalid card or token' });
        return;
      }
      send(res, 200, { code: 0, msg: 'success' });
    } else {
      send(res, 404, { code: 404, msg: 'not found' });
    }
  };
  const f = takeFault('api');
  if (f && applyFault(f, req, res, normal)) return;
  normal();
}

// Plain HTTP endpoints for the HTTPS client's own tests.
function handleTestPaths(req, res, url, body) {
  const p = url.pathname;
  if (p === '/_echo') {
    send(res, 200, {
      method: req.method,
      path: p,
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
      body_len: body.length,
      remote_port: req.socket.remotePort,
      body: body.toString('latin1'),
    }, { 'X-Tt-Logid': 'echo-logid', 'X-Ogw-Ratelimit-Reset': '3', 'Retry-After': '5' });
    return true;
  }
  let m;
  if ((m = p.match(/^\/_status\/(\d{3})$/))) {
    if (url.searchParams.has('reqid_only')) {
      const b = JSON.stringify({ code: 0, msg: 'ok' });
      res.writeHead(Number(m[1]), { 'Content-Type': 'application/json', 'Content-Length': b.length, 'X-Request-Id': 'req-id-1' });
      res.end(b);
      return true;
    }
    send(res, Number(m[1]), { code: Number(m[1]), msg: 'status' }, { 'X-Request-Id': 'req-id-1' });
    return true;
  }
  if ((m = p.match(/^\/_fault\/(\w+)$/))) {
    const f = { mode: m[1], count: 1 };
    for (const [k, v] of url.searchParams) f[k] = /^\d+$/.test(v) ? Number(v) : v;
    return applyFault(f, req, res, () => send(res, 200, { code: 0, msg: 'slow ok' }));
  }
  return false;
}

const server = http.createServer(async (req, res) => {
  const body = await readBody(req);
  const url = new URL(req.url, 'http://127.0.0.1');
  if (handleTestPaths(req, res, url, body)) return;
  if (req.method === 'POST' && url.pathname === '/open-apis/auth/v3/tenant_access_token/internal') {
    handleToken(req, res, body);
    return;
  }
  if (req.method === 'POST' && ['/open-apis/auth/v3/app_access_token',
    '/open-apis/auth/v3/tenant_access_token', '/open-apis/auth/v3/app_ticket/resend'].includes(url.pathname)) {
    handleStoreAuth(req, res, url, body);
    return;
  }
  if (url.pathname.startsWith('/open-apis/')) {
    handleApi(req, res, url, body);
    return;
  }
  send(res, 404, { code: 404, msg: 'not found' });
});
server.keepAliveTimeout = 30000;

function answer(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

server.listen(0, '127.0.0.1', () => {
  answer({ port: server.address().port });
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let c;
    try { c = JSON.parse(line); } catch { answer({ ok: false, error: 'bad json' }); return; }
    switch (c.cmd) {
      case 'reset': reset(); answer({ ok: true }); break;
      case 'config': { const { cmd, ...rest } = c; Object.assign(config, rest); answer({ ok: true }); break; }
      case 'revoke': validTokens.clear(); answer({ ok: true }); break;
      case 'fault': {
        const { cmd, on = 'api', ...f } = c;
        f.count = f.count || 1;
        faults[on].push(f);
        answer({ ok: true });
        break;
      }
      case 'stats': answer(stats); break;
      default: answer({ ok: false, error: 'unknown cmd' });
    }
  });
  rl.on('close', () => process.exit(0));
});
