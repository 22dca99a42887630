// Sidecar mode end to end: the real `cardgate serve --upstream …` in front of
// examples/sidecar_service.mjs (both started here on ephemeral ports);
// `cardgate trigger` clicks; the example's card comes back; with the upstream
// killed the fallback toast does.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SRC, makeTmp, run, startServe, trigger } from './lib.mjs';

const SECRET = 'sidecar-shared-secret-9';

function startSidecar(env = {}) {
  const proc = spawn(process.execPath, [path.join(SRC, 'examples', 'sidecar_service.mjs'), '--port', '0'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`sidecar did not start: ${out}`)), 10000);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) {
        clearTimeout(t);
        resolve({ proc, base: m[1] });
      }
    });
    proc.on('exit', (code) => { clearTimeout(t); reject(new Error(`sidecar exited ${code}: ${out}`)); });
  });
}

const killed = (p) => new Promise((r) => { if (p.exitCode !== null || p.signalCode) r(); else { p.once('exit', r); p.kill('SIGKILL'); } });

describe('cardgate serve --upstream', () => {
  let side;
  let s;
  before(async () => {
    side = await startSidecar({ CARDGATE_UPSTREAM_SECRET: SECRET });
    s = await startServe({
      args: ['--upstream', `value.action == "approve" || value.action == "reject"=${side.base}/card`],
      env: { CARDGATE_UPSTREAM_SECRET: SECRET },
    });
  });
  after(async () => {
    await killed(side.proc);
    const e = await s.stop();
    assert.equal(e.code, 0, `serve exit ${JSON.stringify(e)}\n${s.stderr()}`);
  });

  test('legacy approve click → the example\'s card (before the built-in approval workflow)', async () => {
    const r = await trigger(['--url', s.cardUrl, '--message-id', 'om_side_1', '--operator', 'ou_alice',
      '--value', '{"action":"approve"}']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.header.title.content, 'Approved');
    assert.match(JSON.stringify(r.body.elements), /ou_alice/);
  });

  test('v2 reject click → card + toast', async () => {
    const r = await trigger(['--url', s.eventUrl, '--format', 'v2', '--message-id', 'om_side_2',
      '--value', '{"action":"reject"}']);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.toast.content, '已拒绝');
    assert.equal(r.body.toast.i18n.en_us, 'Rejected');
    assert.equal(r.body.card.type, 'raw');
    assert.equal(r.body.card.data.header.title.content, 'Rejected');
  });

  test('upstream killed → the fallback toast, logged', async () => {
    await killed(side.proc);
    const r = await trigger(['--url', s.eventUrl, '--format', 'v2', '--message-id', 'om_side_3',
      '--value', '{"action":"approve"}']);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.toast.type, 'error');
    assert.equal(r.body.toast.content, '服务暂时不可用，请稍后再试');
    assert.equal(r.body.toast.i18n.en_us, 'Service unavailable, try again later');
    const legacy = await trigger(['--url', s.cardUrl, '--message-id', 'om_side_4', '--value', '{"action":"approve"}']);
    assert.equal(legacy.status, 400, legacy.text); /* a legacy toast */
    assert.equal(legacy.body.content, '服务暂时不可用，请稍后再试');
    assert.match(s.stderr(), /upstream.*answered the fallback toast/);
    assert.doesNotMatch(s.stderr(), new RegExp(SECRET));
  });
});

describe('wrong secret and configuration', () => {
  test('a wrong secret is refused by the example → fallback toast', async () => {
    const side = await startSidecar({ CARDGATE_UPSTREAM_SECRET: SECRET });
    const s = await startServe({ args: ['--upstream', `=${side.base}/card`, '--upstream-secret', 'wrong'] });
    try {
      const r = await trigger(['--url', s.eventUrl, '--format', 'v2', '--value', '{"action":"approve"}']);
      assert.equal(r.body.toast.type, 'error', r.text);
      assert.match(s.stderr(), /HTTP 401/);
    } finally {
      await killed(side.proc);
      await s.stop();
    }
  });

  test('config key "upstream" (array) works like the flag', async () => {
    const side = await startSidecar();
    const dir = makeTmp();
    const cfg = path.join(dir, 'c.json');
    fs.writeFileSync(cfg, JSON.stringify({ upstream: [`value.action=${side.base}/card`], no_builtin: true }));
    const s = await startServe({ args: ['--config', cfg] });
    try {
      const r = await trigger(['--url', s.cardUrl, '--value', '{"action":"approve"}']);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.header.title.content, 'Approved');
    } finally {
      /* stopped while the upstream keeps its connection alive: still a clean, prompt exit */
      const t0 = Date.now();
      const e = await s.stop();
      await killed(side.proc);
      assert.equal(e.code, 0, s.stderr());
      assert.ok(Date.now() - t0 < 2000, `stop took ${Date.now() - t0} ms`);
    }
  });

  test('bad --upstream values are usage errors', async () => {
    for (const [arg, re] of [['value.k', /MATCH=URL/], ['x=ftp://h/', /MATCH=URL/], ['value.k ==bad=http://h/', /route/]]) {
      const r = await run(['serve', '--port', '0', '--db', path.join(makeTmp(), 'x.db'), '--upstream', arg]);
      assert.notEqual(r.code, 0, arg);
      assert.match(r.stderr, re, arg);
    }
  });
});
