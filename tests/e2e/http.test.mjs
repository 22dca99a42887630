// The HTTP server spoken to in raw bytes: malformed input, limits, timeouts,
// pipelining, routing, /healthz.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { connect, exchange, http, parseResponses, prepare, requestBytes, sleep, startServe, uid } from './lib.mjs';

let s;
before(async () => {
  s = await startServe({ args: ['--max-body', '4096', '--header-timeout-ms', '500', '--body-timeout-ms', '500'] });
});
after(async () => {
  const e = await s.stop();
  assert.equal(e.code, 0, `serve exit ${JSON.stringify(e)}\n${s.stderr()}`);
});

describe('routing', () => {
  test('GET /healthz → 200', async () => {
    const r = await http(s, 'GET', '/healthz');
    assert.equal(r.status, 200, r.text);
    assert.ok(r.text.length > 0);
  });

  test('unknown path → 404', async () => {
    const r = await http(s, 'GET', '/nope');
    assert.equal(r.status, 404, r.text);
    const p = await http(s, 'POST', '/webhook/nope', { body: '{}', headers: { 'Content-Type': 'application/json' } });
    assert.equal(p.status, 404, p.text);
  });

  test('GET on a webhook path → 405 with Allow: POST', async () => {
    for (const path of ['/webhook/card', '/webhook/event']) {
      const r = await http(s, 'GET', path);
      assert.equal(r.status, 405, `${path}: ${r.status} ${r.text}`);
      assert.match(r.headers.allow ?? '', /POST/, `${path}: Allow header`);
    }
  });

  test('a body that is not JSON → 400 {code,msg}', async () => {
    const r = await http(s, 'POST', '/webhook/card', { body: 'not json', headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 400, r.text);
    assert.equal(typeof r.body.code, 'number');
    assert.equal(typeof r.body.msg, 'string');
  });
});

describe('malformed and oversized requests', () => {
  test('malformed request line → 400 and the connection is closed', async () => {
    const r = await exchange(s.port, Buffer.from('GARBAGE\r\n\r\n'), { timeoutMs: 5000 });
    assert.equal(r.timedOut, false, 'server kept the connection open');
    assert.equal(r.responses.length, 1, r.data.toString());
    assert.equal(r.responses[0].status, 400);
  });

  test('header line without a colon → 400', async () => {
    const r = await exchange(s.port, Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n'), { timeoutMs: 5000 });
    assert.equal(r.responses[0]?.status, 400, r.data.toString());
  });

  test('body over --max-body (Content-Length) → 413', async () => {
    const body = JSON.stringify({ pad: 'x'.repeat(5000) });
    const r = await exchange(s.port, requestBytes({ url: `${s.cardUrl}`, headers: { 'Content-Type': 'application/json' }, body }), { timeoutMs: 5000 });
    assert.equal(r.responses[0]?.status, 413, r.data.toString().slice(0, 300));
    assert.equal(r.timedOut, false);
  });

  test('chunked body over --max-body → 413', async () => {
    const chunk = 'x'.repeat(3000);
    const req = 'POST /webhook/card HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n' +
      `${chunk.length.toString(16)}\r\n${chunk}\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`;
    const r = await exchange(s.port, Buffer.from(req), { timeoutMs: 5000 });
    assert.equal(r.responses[0]?.status, 413, r.data.toString().slice(0, 300));
  });
});

describe('timeouts', () => {
  test('slow-loris headers past --header-timeout-ms 500 → 408/closed, others served meanwhile', async () => {
    const slow = await connect(s.port);
    const t0 = Date.now();
    await slow.write('POST /webhook/card HTTP/1.1\r\nHost: x\r\n');
    let stopDribble = false;
    const dribble = (async () => {
      // One header byte every 100 ms: the header never completes.
      for (let i = 0; i < 40 && !stopDribble; i++) {
        await sleep(100);
        if (slow.sock.destroyed || slow.sock.writableEnded) break;
        try { slow.sock.write('X'); } catch { break; }
      }
    })();
    // Meanwhile a normal client is served promptly, several times.
    for (let i = 0; i < 5; i++) {
      const t = Date.now();
      const r = await http(s, 'GET', '/healthz');
      assert.equal(r.status, 200);
      assert.ok(Date.now() - t < 400, `healthz took ${Date.now() - t} ms while a slow client dribbles`);
      await sleep(50);
    }
    const timer = setTimeout(() => slow.destroy(), 5000);
    const { data } = await slow.done;
    clearTimeout(timer);
    stopDribble = true;
    await dribble;
    const ms = Date.now() - t0;
    assert.ok(ms >= 450, `closed after ${ms} ms, before the header timeout`);
    assert.ok(ms < 3000, `slow client held for ${ms} ms (header timeout 500 ms)`);
    const rs = parseResponses(data);
    assert.equal(rs.length, 1, `one 408 answer, got ${JSON.stringify(data.toString())}`);
    assert.equal(rs[0].status, 408);
    assert.equal(typeof rs[0].body.msg, 'string');
  });

  test('body that stops short of Content-Length past --body-timeout-ms → 408/closed', async () => {
    const c = await connect(s.port);
    const t0 = Date.now();
    await c.write('POST /webhook/card HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"open_id":');
    const timer = setTimeout(() => c.destroy(), 5000);
    const { data } = await c.done;
    clearTimeout(timer);
    const ms = Date.now() - t0;
    assert.ok(ms >= 450 && ms < 3000, `closed after ${ms} ms`);
    const rs = parseResponses(data);
    assert.equal(rs.length, 1, `one 408 answer, got ${JSON.stringify(data.toString())}`);
    assert.equal(rs[0].status, 408);
  });
});

describe('keep-alive and pipelining', () => {
  test('three pipelined requests are answered in order on one connection', async () => {
    const idA = uid('om_pl');
    const idB = uid('om_pl');
    const [a, b] = await Promise.all([
      prepare(['--url', s.cardUrl, '--message-id', idA, '--operator', 'ou_p1', '--value', '{"action":"accept"}']),
      prepare(['--url', s.cardUrl, '--message-id', idB, '--operator', 'ou_p2', '--value', '{"action":"reject"}']),
    ]);
    const bytes = Buffer.concat([
      requestBytes(a, { keepAlive: true }),
      Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'),
      requestBytes(b, { keepAlive: false }), // the last one closes
    ]);
    const r = await exchange(s.port, bytes, { timeoutMs: 10000 });
    assert.equal(r.timedOut, false, 'connection not closed after Connection: close');
    assert.equal(r.responses.length, 3, r.data.toString());
    assert.equal(r.responses[0].status, 200);
    assert.ok(JSON.stringify(r.responses[0].body).includes('已同意'), r.responses[0].text);
    assert.equal(r.responses[1].status, 200);
    assert.equal(r.responses[2].status, 200);
    assert.ok(JSON.stringify(r.responses[2].body).includes('被拒绝'), r.responses[2].text);
  });

  test('requests sent before the client half-closes are all answered', async () => {
    const id = uid('om_fin');
    const a = await prepare(['--url', s.cardUrl, '--message-id', id, '--value', '{"action":"accept"}']);
    const c = await connect(s.port);
    // The click is answered later (after the store commits); /healthz and
    // the FIN are already there by then.
    await c.write(Buffer.concat([
      requestBytes(a, { keepAlive: true }),
      Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'),
    ]));
    c.end();
    const timer = setTimeout(() => c.destroy(), 5000);
    const { data } = await c.done;
    clearTimeout(timer);
    const rs = parseResponses(data);
    assert.deepEqual(rs.map((x) => x.status), [200, 200], data.toString());
    assert.ok(JSON.stringify(rs[0].body).includes('已同意'), rs[0].text);
  });

  test('keep-alive: two requests sent one after the other on one connection', async () => {
    const c = await connect(s.port);
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    for (let i = 0; i < 50 && parseResponses(c.data()).length < 1; i++) await sleep(20);
    assert.equal(parseResponses(c.data()).length, 1, 'first answer on a kept-alive connection');
    await c.write('GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const timer = setTimeout(() => c.destroy(), 5000);
    const { data } = await c.done;
    clearTimeout(timer);
    const rs = parseResponses(data);
    assert.deepEqual(rs.map((x) => x.status), [200, 404]);
  });
});
