// The outbox from the outside: `cardgate outbox list/show/retry/drop` on a
// store filled with sqlite3, and `cardgate serve` delivering an entry left by
// an earlier run through the fake Lark Open API (tests/unit/fake_lark_openapi.mjs).
// The late-reply path itself needs a slow handler in serve (the sidecar):
// it is covered by tests/unit/test_outbox.c for now.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';

import { SRC, makeTmp, run, sleep, startFakeProcess, startServe } from './lib.mjs';

const CARD = '{"config":{"update_multi":true},"elements":[{"tag":"markdown","content":"later"}]}';

function sql(db, text) {
  const r = spawnSync('sqlite3', [db, text], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

// A store at the current schema with three entries: pending (with a token),
// dead, delivered. Returns { db, ids }.
async function filledStore() {
  const db = path.join(makeTmp(), 'cg.db');
  const r = await run(['outbox', 'list', '--db', db]); // creates + migrates
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /no outbox entries/);
  const now = Date.now();
  const card = CARD.replaceAll("'", "''");
  sql(db, `INSERT INTO outbox(platform, message_id, update_token, token_uses, token_expires_at_ms, card_json, state, attempts, next_attempt_at_ms, last_error, created_at_ms, updated_at_ms)
           VALUES('lark','om_pending','c-secret-token',0,${now + 1800000},'${card}','pending',0,${now},NULL,${now},${now}),
                 ('lark','om_dead',NULL,0,0,'${card}','dead',8,${now},'message patch: permanent, http 400, code 230001: bad',${now},${now}),
                 ('lark','om_done',NULL,0,0,'${card}','delivered',1,${now},NULL,${now},${now})`);
  const ids = Object.fromEntries(
    sql(db, 'SELECT message_id, id FROM outbox').split('\n').map((l) => l.split('|')).map(([m, i]) => [m, Number(i)]));
  return { db, ids };
}

const show = async (db, id) => {
  const r = await run(['outbox', 'show', String(id), '--db', db, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
};

describe('cardgate outbox', () => {
  test('--help documents the subcommands', async () => {
    const r = await run(['outbox', '--help']);
    assert.equal(r.code, 0);
    for (const w of ['list', 'show', 'retry', 'drop', '--db', '--json', '--state']) assert.ok(r.stdout.includes(w), w);
    const top = await run(['--help']);
    assert.match(top.stdout, /outbox/);
  });

  test('usage errors exit 2', async () => {
    for (const args of [['outbox'], ['outbox', 'frob'], ['outbox', 'show'], ['outbox', 'show', 'x'],
      ['outbox', 'list', '--state', 'odd'], ['outbox', 'drop', '1', '2']]) {
      const r = await run(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, /Try 'cardgate outbox --help'/);
    }
  });

  test('list, show, retry, drop', async () => {
    const { db, ids } = await filledStore();
    let r = await run(['outbox', 'list', '--db', db]);
    assert.equal(r.code, 0, r.stderr);
    for (const m of ['om_pending', 'om_dead', 'om_done', 'code 230001']) assert.ok(r.stdout.includes(m), m);
    assert.ok(!r.stdout.includes('c-secret-token'));

    r = await run(['outbox', 'list', '--db', db, '--json', '--state', 'dead']);
    const dead = JSON.parse(r.stdout);
    assert.equal(dead.length, 1);
    assert.equal(dead[0].message_id, 'om_dead');
    assert.equal(dead[0].attempts, 8);

    const p = await show(db, ids.om_pending);
    assert.equal(p.state, 'pending');
    assert.equal(p.has_token, true);
    assert.deepEqual(p.card, JSON.parse(CARD));
    const text = await run(['outbox', 'show', String(ids.om_pending), '--db', db]);
    assert.ok(!text.stdout.includes('c-secret-token'), 'the token is never shown');
    assert.match(text.stdout, /token +yes \(uses 0 of 2/);

    // retry a dead entry: due now, fresh attempts
    r = await run(['outbox', 'retry', String(ids.om_dead), '--db', db]);
    assert.equal(r.code, 0, r.stderr);
    const d = await show(db, ids.om_dead);
    assert.equal(d.state, 'pending');
    assert.equal(d.attempts, 0);
    // a delivered one cannot be retried; an unknown id is an error
    r = await run(['outbox', 'retry', String(ids.om_done), '--db', db]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /delivered already/);
    r = await run(['outbox', 'show', '9999', '--db', db]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no entry 9999/);

    r = await run(['outbox', 'drop', String(ids.om_done), '--db', db]);
    assert.equal(r.code, 0, r.stderr);
    r = await run(['outbox', 'drop', String(ids.om_done), '--db', db]);
    assert.equal(r.code, 1);
    r = await run(['outbox', 'list', '--db', db, '--json']);
    assert.equal(JSON.parse(r.stdout).length, 2);
  });
});

const startFake = () => startFakeProcess('fake_lark_openapi.mjs');

describe('cardgate serve delivers the outbox', () => {
  test('an entry left by an earlier run is delivered at start through its token', async () => {
    const fake = await startFake();
    try {
      const { db, ids } = await filledStore();
      sql(db, `DELETE FROM outbox WHERE id <> ${ids.om_pending}`);
      const s = await startServe({
        db,
        args: ['--lark-base-url', fake.base],
        env: { LARK_APP_ID: 'cli_test', LARK_APP_SECRET: 'secret_test' },
      });
      try {
        let e;
        for (let i = 0; i < 100; i++) {
          e = await show(db, ids.om_pending);
          if (e.state === 'delivered') break;
          await sleep(50);
        }
        assert.equal(e.state, 'delivered', s.stdout() + s.stderr());
        assert.equal(e.token_uses, 1);
        const st = await fake.cmd({ cmd: 'stats' });
        assert.equal(st.routes['POST /open-apis/interactive/v1/card/update'], 1);
        assert.equal(st.last.body.token, 'c-secret-token');
        assert.deepEqual(st.last.body.card, JSON.parse(CARD));
        assert.ok(!(s.stdout() + s.stderr()).includes('c-secret-token'), 'the token is never logged');
      } finally {
        await s.stop();
      }
    } finally {
      fake.stop();
    }
  });
});
