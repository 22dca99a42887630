// A fake DingTalk Open API for the unit tests of
// src/lib/openapi/dingtalk_api.c. Started by the test with `node` (through
// tests/unit/support/fake_process.c), it listens on 127.0.0.1 port 0 and
// prints {"port":N} as its first stdout line.
//
// Control: one JSON command per stdin line, one JSON answer per stdout line.
//   {"cmd":"reset"}                       forget tokens, counters, faults, config
//   {"cmd":"config", ...}                 merge into the config below
//   {"cmd":"revoke"}                      every token issued so far stops working
//   {"cmd":"fault","on":"api"|"token","mode":M,"count":N,...}
//                                         answer the next N such requests with M
//   {"cmd":"stats"}                       counters and the last API request
// The process exits when stdin closes.
//
// Protocol facts follow ../shared/protocols/dingtalk.md §4 and §10: the
// token answer is {accessToken, expireIn}; bad credentials are HTTP 400
// invalidClientIdOrSecret; a bad token is HTTP 400 InvalidAuthentication, a
// missing one 400 AuthenticationFailed.MissingParameter; errors are
// {code, message, requestid}; the card endpoints check their bodies the way
// §4.3/§4.4 describe (cardParamMap values must be strings, the deliver
// model must match the space type).
import http from 'node:http';
import readline from 'node:readline';

const DEFAULT_CONFIG = {
  app_key: 'dingkey_test',
  app_secret: 'secret_test',
  expire: 7200,
  token_delay_ms: 0,
};

let config;
let tokenSerial;
let validTokens;
let faults;
let stats;
let reqSerial = 0;

function reset() {
  config = { ...DEFAULT_CONFIG };
  tokenSerial = 0;
  validTokens = new Set();
  faults = { api: [], token: [] };
  stats = { token_fetches: 0, api_calls: 0, routes: {}, last: null, tokens: [], token_bodies: [] };
}
reset();

function send(res, status, obj, headers = {}) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  res.writeHead(status, {
    'Content-Type': typeof obj === 'string' ? 'text/html' : 'application/json;charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

function err(res, status, code, message, headers) {
  send(res, status, { code, message, requestid: `req-${++reqSerial}` }, headers);
}

function takeFault(kind) {
  const q = faults[kind];
  if (!q.length) return null;
  const f = q[0];
  if (--f.count <= 0) q.shift();
  return f;
}

function applyFault(f, req, res, normal) {
  switch (f.mode) {
    case 'html502':
      res.writeHead(502, { 'Content-Type': 'text/html' });
      res.end('<html><body><h1>502 Bad Gateway</h1></body></html>\n');
      return true;
    case 'html200':
      send(res, 200, '<html><body>punish page</body></html>');
      return true;
    case 'truncated':
      send(res, 200, '{"success":true,"result":{"outTrackId":"', {
        'Content-Type': 'application/json',
      });
      return true;
    case 'qps':
      err(res, 403, 'Forbidden.AccessDenied.QpsLimitForAppkeyAndApi',
        'qps limit for appkey and api', f.retry_after ? { 'Retry-After': String(f.retry_after) } : {});
      return true;
    case 'qps_api':
      err(res, 403, 'Forbidden.AccessDenied.QpsLimitForApi', 'qps limit for api');
      return true;
    case 'rate429':
      res.writeHead(429, { 'Retry-After': '3', 'Content-Type': 'text/plain' });
      res.end('slow down');
      return true;
    case 'busy':
      err(res, 500, 'system.busy', 'system busy');
      return true;
    case 'status500':
      err(res, 500, 'InternalError', 'internal error');
      return true;
    case 'invalid_auth':
      err(res, 400, 'InvalidAuthentication', '不合法的access_token');
      return true;
    case 'unauth401':
      err(res, 401, 'Unauthorized', 'unauthorized');
      return true;
    case 'code':
      err(res, f.status || 400, f.code, f.message || 'fault');
      return true;
    case 'slow':
      setTimeout(() => { if (!res.destroyed) normal(); }, f.ms || 2000);
      return true;
    case 'hang':
      return true;
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

function isObj(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// §4.7: every cardParamMap value is a string.
function paramMapOk(cd) {
  return isObj(cd) && isObj(cd.cardParamMap) &&
    Object.values(cd.cardParamMap).every((v) => typeof v === 'string');
}

function handleToken(req, res, body) {
  stats.token_fetches++;
  const normal = () => {
    const b = parseJson(body) || {};
    stats.token_bodies.push(Object.keys(b));
    if (b.appKey !== config.app_key || b.appSecret !== config.app_secret) {
      err(res, 400, 'invalidClientIdOrSecret', '无效的clientId或者clientSecret');
      return;
    }
    const token = `dt-fake-${++tokenSerial}`;
    validTokens.add(token);
    send(res, 200, { expireIn: config.expire, accessToken: token });
  };
  const f = takeFault('token');
  if (f && applyFault(f, req, res, normal)) return;
  if (config.token_delay_ms) setTimeout(normal, config.token_delay_ms);
  else normal();
}

// createAndDeliver (§4.3): checks the body, answers per space.
function createAndDeliver(res, b) {
  if (!isObj(b)) return err(res, 400, 'param.empty', 'empty body');
  if (!b.cardTemplateId) return err(res, 400, 'param.cardTemplateIdEmpty', 'no template');
  if (!b.outTrackId) return err(res, 400, 'param.outTrackIdEmpty', 'no outTrackId');
  if (!paramMapOk(b.cardData)) return err(res, 400, 'param.invalid', 'cardParamMap values must be strings');
  if (b.callbackType !== 'STREAM') return err(res, 400, 'param.invalid', 'callbackType');
  if (b.userIdType !== 1) return err(res, 400, 'param.invalid', 'userIdType');
  const m = /^dtv1\.card\/\/(IM_GROUP|IM_ROBOT)\.(.+)$/.exec(b.openSpaceId || '');
  if (!m) return err(res, 400, 'param.openSpaceIdInvalid', 'bad openSpaceId');
  const [, type, id] = m;
  if (type === 'IM_GROUP') {
    if (!isObj(b.imGroupOpenDeliverModel) || !b.imGroupOpenDeliverModel.robotCode) {
      return err(res, 400, 'param.openDeliverModelEmpty', 'imGroupOpenDeliverModel');
    }
    if (!isObj(b.imGroupOpenSpaceModel) || b.imGroupOpenSpaceModel.supportForward !== true) {
      return err(res, 400, 'param.openSpaceModelInvalid', 'imGroupOpenSpaceModel');
    }
    if (b.imRobotOpenDeliverModel) return err(res, 400, 'param.openDeliverModelError', 'robot model for a group');
  } else {
    const d = b.imRobotOpenDeliverModel;
    if (!isObj(d) || d.spaceType !== 'IM_ROBOT' || !d.robotCode) {
      return err(res, 400, 'param.openDeliverModelEmpty', 'imRobotOpenDeliverModel');
    }
    if (!isObj(b.imRobotOpenSpaceModel) || b.imRobotOpenSpaceModel.supportForward !== true) {
      return err(res, 400, 'param.openSpaceModelInvalid', 'imRobotOpenSpaceModel');
    }
    if (b.imGroupOpenDeliverModel) return err(res, 400, 'param.openDeliverModelError', 'group model for a robot space');
  }
  const failSpace = id.startsWith('fail');
  send(res, 200, {
    success: true,
    result: {
      outTrackId: b.outTrackId,
      deliverResults: [{
        spaceType: type, spaceId: id, success: !failSpace,
        carrierId: failSpace ? '' : `carrier-${stats.api_calls}`,
        errorMsg: failSpace ? 'robot is not in the group' : '',
      }],
    },
  });
}

function updateCard(res, b) {
  if (!isObj(b)) return err(res, 400, 'param.empty', 'empty body');
  if (!b.outTrackId) return err(res, 400, 'param.outTrackIdEmpty', 'no outTrackId');
  if (b.outTrackId === 'missing') return err(res, 400, 'param.cardNotExist', 'card does not exist');
  if (!paramMapOk(b.cardData)) return err(res, 400, 'param.cardDataAndPrivateDataBothEmpty', 'no card data');
  if (!isObj(b.cardUpdateOptions) || typeof b.cardUpdateOptions.updateCardDataByKey !== 'boolean') {
    return err(res, 400, 'param.invalid', 'cardUpdateOptions');
  }
  send(res, 200, { success: true, result: true });
}

function handleApi(req, res, url, body) {
  stats.api_calls++;
  const token = req.headers['x-acs-dingtalk-access-token'] || '';
  const route = `${req.method} ${url.pathname}`;
  stats.routes[route] = (stats.routes[route] || 0) + 1;
  stats.tokens.push(token);
  stats.last = {
    method: req.method,
    path: url.pathname,
    content_type: req.headers['content-type'] || '',
    token,
    raw: body.toString('utf8'),
    body: parseJson(body) ?? body.toString('utf8'),
  };
  const normal = () => {
    if (!token) return err(res, 400, 'AuthenticationFailed.MissingParameter', 'missing token');
    if (!validTokens.has(token)) return err(res, 400, 'InvalidAuthentication', '不合法的access_token');
    const b = parseJson(body);
    if (req.method === 'POST' && url.pathname === '/v1.0/card/instances/createAndDeliver') return createAndDeliver(res, b);
    if (req.method === 'PUT' && url.pathname === '/v1.0/card/instances') return updateCard(res, b);
    if (req.method === 'GET' && url.pathname === '/v1.0/echo') return send(res, 200, { result: { q: url.search } });
    return err(res, 404, 'NotFound', 'not found');
  };
  const f = takeFault('api');
  if (f && applyFault(f, req, res, normal)) return;
  normal();
}

const server = http.createServer(async (req, res) => {
  const body = await readBody(req);
  const url = new URL(req.url, 'http://127.0.0.1');
  if (req.method === 'POST' && url.pathname === '/v1.0/oauth2/accessToken') {
    handleToken(req, res, body);
    return;
  }
  if (url.pathname.startsWith('/v1.0/')) {
    handleApi(req, res, url, body);
    return;
  }
  err(res, 404, 'NotFound', 'not found');
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
