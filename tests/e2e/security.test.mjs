// Verification: URL-verification challenges, signatures, tokens, decryption
// and the replay window. Every rejection is a 4xx with a JSON {code,msg}
// body, and nothing reaches a workflow (the card is never stored).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { DONE_DIV, SECRETS, cardShow, startServe, trigger, uid } from './lib.mjs';

let s;
before(async () => { s = await startServe(); });
after(async () => {
  const e = await s.stop();
  assert.equal(e.code, 0, `serve exit ${JSON.stringify(e)}\n${s.stderr()}`);
});

function assertError(r, status, what) {
  assert.equal(r.status, status, `${what}: HTTP ${r.status} ${r.text}`);
  assert.equal(r.code, 1, `${what}: trigger exit code`);
  assert.equal(typeof r.body, 'object', `${what}: JSON body, got ${r.text}`);
  assert.ok(Number.isInteger(r.body.code) && r.body.code !== 0, `${what}: code ${r.text}`);
  assert.equal(typeof r.body.msg, 'string', `${what}: msg ${r.text}`);
  assert.ok(r.body.msg.length > 0);
  // Never a secret in an answer.
  assert.ok(!r.text.includes(SECRETS.token) && !r.text.includes(SECRETS.key), `${what}: secret leaked`);
}

describe('URL verification (challenge)', () => {
  for (const [name, extra] of [['plain', ['--no-encrypt']], ['encrypted', []]]) {
    for (const format of ['legacy', 'v2']) {
      test(`${name} challenge on the ${format} path is echoed`, async () => {
        const ch = uid('chal');
        const url = format === 'v2' ? s.eventUrl : s.cardUrl;
        const r = await trigger(['--url', url, '--format', format, '--challenge', ch, ...extra]);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.code, 0);
        assert.deepEqual(r.body, { challenge: ch });
      });
    }
  }

  test('wrong token → 401, challenge not echoed', async () => {
    const ch = uid('chal');
    const r = await trigger(['--url', s.cardUrl, '--challenge', ch, '--wrong-token']);
    assertError(r, 401, 'wrong-token challenge');
    assert.ok(!r.text.includes(ch));
  });

  test('wrong token on the event path, plain → 401', async () => {
    const r = await trigger(['--url', s.eventUrl, '--format', 'v2', '--challenge', uid('chal'), '--wrong-token', '--no-encrypt']);
    assertError(r, 401, 'wrong-token plain challenge');
  });
});

describe('tampered clicks are rejected and change nothing', () => {
  const cases = [
    // [name, args, format, status]
    ['--bad-signature, legacy (SHA-1)', ['--bad-signature'], 'legacy', 401],
    ['--bad-signature, legacy (SHA-256)', ['--bad-signature', '--sign', 'event'], 'legacy', 401],
    ['--bad-signature, v2', ['--bad-signature'], 'v2', 401],
    ['--wrong-token, legacy', ['--wrong-token'], 'legacy', 401],
    ['--wrong-token, v2 (header.token)', ['--wrong-token'], 'v2', 401],
    ['--corrupt, legacy', ['--corrupt'], 'legacy', 400],
    ['--corrupt, v2', ['--corrupt'], 'v2', 400],
    ['no signature headers, legacy', ['--sign', 'none'], 'legacy', 401],
    ['no signature headers, v2', ['--sign', 'none'], 'v2', 401],
    ['legacy signed with the wrong scheme (SHA-256) but plain body', ['--no-encrypt', '--sign', 'event'], 'legacy', 401],
  ];
  for (const [name, args, format, status] of cases) {
    test(`${name} → ${status}`, async () => {
      const id = uid('om_t');
      const url = format === 'v2' ? s.eventUrl : s.cardUrl;
      const r = await trigger(['--url', url, '--format', format, '--message-id', id, ...args]);
      assertError(r, status, name);
      const { card } = await cardShow(s.db, id);
      assert.equal(card, null, `${name}: the click reached the store`);
    });
  }

  test('a header-only tamper: signature computed, then the nonce changed → 401', async () => {
    const r = await trigger(['--url', s.cardUrl, '--message-id', uid('om_t'), '--header', 'X-Lark-Request-Nonce: other']);
    assertError(r, 401, 'nonce swapped');
  });

  test('--stale without a replay window is accepted (the default is off, lark.md §0.2)', async () => {
    const id = uid('om_st');
    const r = await trigger(['--url', s.cardUrl, '--message-id', id, '--stale']);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.i18n_elements.zh_cn, DONE_DIV);
  });
});

describe('replay window', () => {
  let w;
  before(async () => { w = await startServe({ args: ['--replay-window', '300'] }); });
  after(async () => { await w.stop(); });

  for (const format of ['legacy', 'v2']) {
    test(`--replay-window 300: --stale (${format}) → 401; fresh → 200`, async () => {
      const url = format === 'v2' ? w.eventUrl : w.cardUrl;
      const id = uid('om_rw');
      const r = await trigger(['--url', url, '--format', format, '--message-id', id, '--stale']);
      assertError(r, 401, `stale ${format}`);
      assert.equal((await cardShow(w.db, id)).card, null);
      const ok = await trigger(['--url', url, '--format', format, '--message-id', id]);
      assert.equal(ok.status, 200, ok.text);
    });
  }

  test('--replay-window 300: a timestamp from the future (+1 h) → 401', async () => {
    const ts = String(Math.floor(Date.now() / 1000) + 3600);
    const r = await trigger(['--url', w.cardUrl, '--message-id', uid('om_rw'), '--timestamp', ts]);
    assertError(r, 401, 'future timestamp');
  });
});

describe('secrets configuration', () => {
  test('with no secrets configured nothing is checked (development mode)', async () => {
    const d = await startServe({ secrets: null });
    try {
      const r = await trigger(['--url', d.cardUrl, '--message-id', uid('om_dev')], { secrets: null });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.i18n_elements.zh_cn, DONE_DIV);
    } finally {
      await d.stop();
    }
  });

  test('an encrypted body to a server without an encrypt key → 4xx', async () => {
    const d = await startServe({ secrets: { token: SECRETS.token } });
    try {
      const r = await trigger(['--url', d.cardUrl, '--message-id', uid('om_nokey')]);
      assert.ok(r.status >= 400 && r.status < 500, `HTTP ${r.status} ${r.text}`);
      assert.equal(typeof r.body?.msg, 'string', r.text);
    } finally {
      await d.stop();
    }
  });
});
