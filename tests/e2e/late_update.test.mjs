// The whole late path, as seed 000 describes it: a handler (here the user's
// sidecar service) needs 4 s; cardgate answers Lark "keep the card" within
// the deadline, then delivers the card through the callback's update token,
// exactly once, after the answer — through the durable outbox and the Open
// API (the fake in tests/unit/fake_lark_openapi.mjs).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { run, sleep, startFakeProcess, startServe, trigger, uid } from './lib.mjs';

describe('a slow handler', () => {
  test('answered in time, then updated through the token exactly once', async () => {
    const api = await startFakeProcess('fake_lark_openapi.mjs');
    const up = await startFakeProcess('fake_upstream.mjs');
    try {
      const s = await startServe({
        args: [
          '--deadline-ms', '2500',
          '--upstream', `value.action == "slow"=${up.base}/slow?ms=4000`,
          '--upstream-timeout-ms', '10000',
          '--lark-base-url', api.base,
        ],
        env: { LARK_APP_ID: 'cli_test', LARK_APP_SECRET: 'secret_test' },
      });
      try {
        const id = uid('om_slow');
        const token = `c-${uid('tok')}`;
        const t0 = Date.now();
        const r = await trigger(['--url', s.cardUrl, '--message-id', id, '--token', token, '--value', '{"action":"slow"}']);
        const answeredMs = Date.now() - t0;
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.body, {}, 'keep the card');
        assert.ok(answeredMs < 3000, `answered after ${answeredMs} ms`);
        let st = await api.cmd({ cmd: 'stats' });
        assert.equal(st.routes['POST /open-apis/interactive/v1/card/update'] || 0, 0, 'no update before the answer');

        for (let i = 0; i < 100; i++) {
          st = await api.cmd({ cmd: 'stats' });
          if (st.routes['POST /open-apis/interactive/v1/card/update']) break;
          await sleep(100);
        }
        assert.equal(st.routes['POST /open-apis/interactive/v1/card/update'], 1, JSON.stringify(st.routes));
        assert.equal(st.last.body.token, token);
        assert.equal(st.last.body.card.elements[0].text.content, 'approved ✓');
        await sleep(500);
        st = await api.cmd({ cmd: 'stats' });
        assert.equal(st.routes['POST /open-apis/interactive/v1/card/update'], 1, 'exactly once');
        assert.equal(st.token_fetches, 1);

        const list = await run(['outbox', 'list', '--db', s.db, '--json']);
        assert.equal(list.code, 0, list.stderr);
        const entries = JSON.parse(list.stdout);
        assert.equal(entries.length, 1);
        assert.equal(entries[0].state, 'delivered');
        assert.ok(!(s.stdout() + s.stderr()).includes(token), 'the update token is never logged');
      } finally {
        await s.stop();
      }
    } finally {
      api.stop();
      up.stop();
    }
  });
});
