// The outbox is durable: a late card committed to the store survives
// `kill -9` of `cardgate serve` and is delivered by the next run on the same
// store — through the callback's own update token, exactly once, never
// before the callback was answered. And an Open API that fails for a while
// loses nothing: the card arrives after recovery. `cardgate emulate` plays
// Lark (its card/update rules and its faults: docs/emulator.md); the slow
// handler is the sidecar fake (tests/unit/fake_upstream.mjs).
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { makeTmp, run, sleep, startEmulator, startFakeProcess, startServe } from './lib.mjs';

const APP = { LARK_APP_ID: 'cli_crash_e2e', LARK_APP_SECRET: 'crash e2e secret' };
const UPDATE = 'POST /open-apis/interactive/v1/card/update';
const TOKEN_PATH = '/open-apis/auth/v3/tenant_access_token/internal';
const SHARED_CARD = {
  config: { update_multi: true },
  elements: [{ tag: 'div', text: { tag: 'plain_text', content: 'please decide' } }],
};

let emu;
let up;

before(async () => {
  emu = await startEmulator({ env: APP });
  up = await startFakeProcess('fake_upstream.mjs');
});

after(async () => {
  up?.stop();
  const e = await emu?.stop();
  assert.equal(e?.code, 0, `emulate exit ${JSON.stringify(e)}\n${emu?.stderr()}`);
});

// serve with a 2.5 s deadline, the slow route (3.5 s: late) and the emulator
// as the Open API, on the store db.
const startSlowServe = (db) =>
  startServe({
    db,
    env: APP,
    args: [
      '--deadline-ms', '2500',
      '--upstream', `value.action == "slow"=${up.base}/slow?ms=3500`,
      '--upstream-timeout-ms', '10000',
      '--lark-base-url', emu.base,
    ],
  });

const fault = async (body) => {
  const r = await emu.post('/emulator/fault', body);
  assert.equal(r.status, 200, JSON.stringify(r.body));
};

async function outboxList(db) {
  const r = await run(['outbox', 'list', '--db', db, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

// Polls the emulator's state until fn(state) is truthy (or ms pass); returns
// the last state.
async function waitState(fn, ms) {
  const t0 = Date.now();
  for (;;) {
    const st = await emu.state();
    if (fn(st) || Date.now() - t0 > ms) return st;
    await sleep(100);
  }
}

// Sends a shared card (before any fault: sending needs a tenant token), points
// the emulator's clicks at s and clicks the slow button. Checks the answer is
// "keep" within 3 s → { id, token }.
async function slowClick(s) {
  const id = await emu.send(SHARED_CARD);
  const c = await emu.post('/emulator/config', { app_url: s.base });
  assert.equal(c.status, 200);
  return { id, clickAt: Date.now(), ...(await click(id)) };
}

async function click(id) {
  const t0 = Date.now();
  const r = await emu.post('/emulator/click', { message_id: id, value: { action: 'slow' } });
  const ms = Date.now() - t0;
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.answer, {}, 'keep the card');
  assert.ok(ms < 3000, `answered after ${ms} ms`);
  assert.match(r.body.token, /^c-/);
  return { token: r.body.token };
}

describe('the outbox across a crash and an outage', () => {
  test('kill -9 with an update pending: the next run delivers it once, through the token', { timeout: 60000 }, async () => {
    const db = path.join(makeTmp(), 'cg.db');
    let s1 = await startSlowServe(db);
    let s2;
    try {
      const before = (await emu.state()).calls.length;
      // Every tenant-token fetch answers 500 until cleared: each delivery
      // attempt fails before the card/update is sent, so the token's budget
      // (2 uses, counted on any answer that may have reached Lark) is intact.
      const { id, token } = await slowClick(s1);
      await fault({ on: 'token', mode: '500', count: 100000 });

      // Pending, failing on the 500s, and not leased right now (a lease would
      // hold the entry for 60 s after the crash): kill it between attempts.
      let entry;
      const t0 = Date.now();
      for (;;) {
        const list = await outboxList(db);
        entry = list.find((e) => e.message_id === id);
        const left = entry ? entry.next_attempt_at_ms - Date.now() : 0;
        if (entry && entry.state === 'pending' && entry.attempts >= 2 && left > 400 && left < 30000) break;
        assert.ok(Date.now() - t0 < 25000, `entry never pending between attempts: ${JSON.stringify(entry)}`);
        await sleep(50);
      }
      assert.match(entry.last_error, /500/, entry.last_error);
      assert.equal(entry.has_token, true);
      assert.equal(entry.token_uses, 0, 'a failed token fetch spends no use');
      const killed = await s1.stop('SIGKILL');
      assert.equal(killed.signal, 'SIGKILL');

      let st = await emu.state();
      let calls = st.calls.slice(before);
      assert.equal(calls.filter((c) => c.route === UPDATE).length, 0, 'nothing reached card/update before the crash');
      assert.ok(calls.filter((c) => c.path === TOKEN_PATH && c.status === 500).length >= 2, JSON.stringify(calls));

      await fault({ on: 'token', mode: 'none' });
      s2 = await startSlowServe(db); // same store, a new process
      st = await waitState((x) => x.calls.slice(before).some((c) => c.route === UPDATE && c.accepted), 20000);
      await sleep(1500); // anything more would show up now (the poll is 1 s)
      st = await emu.state();
      calls = st.calls.slice(before);
      const upd = calls.filter((c) => c.route === UPDATE);
      assert.equal(upd.length, 1, JSON.stringify(upd));
      assert.equal(upd[0].accepted, true, JSON.stringify(upd[0]));
      assert.equal(upd[0].early, false);
      assert.equal(upd[0].token, token);
      assert.equal(upd[0].message_id, id);
      assert.equal(st.early_updates.length, 0);
      assert.equal(st.card_tokens[token].uses, 1);
      assert.equal(st.messages[id].card.elements[0].text.content, 'approved ✓');
      assert.equal(calls.filter((c) => c.route?.startsWith('PATCH')).length, 0, 'no patch: the token had budget');

      const list = await outboxList(db);
      assert.equal(list.length, 1, JSON.stringify(list));
      assert.equal(list[0].state, 'delivered');
      for (const s of [s1, s2]) assert.ok(!(s.stdout() + s.stderr()).includes(token), 'the update token is never logged');
    } finally {
      await fault({ on: 'token', mode: 'none' });
      await s1.stop('SIGKILL');
      await s2?.stop();
    }
  });

  for (const n of [1, 3]) {
    test(`the Open API answers 500 ${n}× : the update arrives after recovery, nothing lost`, { timeout: 60000 }, async () => {
      const db = path.join(makeTmp(), 'cg.db');
      const s = await startSlowServe(db);
      try {
        const { id, token } = await slowClick(s);
        const before = (await emu.state()).calls.length;
        // The next n Open API calls (not token fetches) answer HTTP 500.
        await fault({ on: 'api', mode: '500', count: n });
        const st = await waitState((x) => x.messages[id].card.elements[0].text.content === 'approved ✓', 30000);
        await sleep(1500); // anything more would show up now (the poll is 1 s)
        // This card's calls: delayed updates and patches of its message (a
        // faulted call is recorded with its raw path, without token).
        const calls = (await emu.state()).calls.slice(before).map((c) => ({
          ...c,
          kind: c.path === '/open-apis/interactive/v1/card/update' ? 'update'
            : c.method === 'PATCH' && c.path === `/open-apis/im/v1/messages/${id}` ? 'patch' : 'other',
        })).filter((c) => c.kind !== 'other' || c.path !== TOKEN_PATH);
        const show = JSON.stringify(calls);
        assert.equal(st.messages[id].card.elements[0].text.content, 'approved ✓', show);
        assert.equal(calls.filter((c) => c.kind === 'other').length, 0, show);
        assert.deepEqual(calls.map((c) => c.status), [...Array(n).fill(500), 200], show);
        assert.ok(calls.every((c) => !c.early), show);
        assert.equal(st.early_updates.length, 0);
        if (n === 1) {
          // One doubtful use (the 500) + the accepted one = the budget of 2.
          assert.deepEqual(calls.map((c) => c.kind), ['update', 'update'], show);
          assert.equal(calls[1].accepted, true, show);
          assert.equal(calls[1].token, token);
          assert.equal(st.card_tokens[token].uses, 1);
        } else {
          // Two 500s spent the token's budget (a use counts whenever the
          // request may have reached Lark): the card goes by message patch
          // (the first patch fails too, the next is accepted) — never a 3rd use.
          assert.deepEqual(calls.map((c) => c.kind), ['update', 'update', 'patch', 'patch'], show);
          assert.equal(st.card_tokens[token].uses, 0);
        }
        const list = await outboxList(db);
        assert.equal(list.length, 1);
        assert.equal(list[0].state, 'delivered');
        assert.equal(list[0].message_id, id);
      } finally {
        await fault({ on: 'api', mode: 'none' });
        await s.stop();
      }
    });
  }
});
