// Card state under concurrency and across restarts: compare-and-set means
// exactly one of two simultaneous decisions wins, and a decided card stays
// decided when the server restarts on the same database.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { FIRST_VERSION, cardShow, connect, parseResponses, prepare, requestBytes, startServe, startSidecarStub, trigger, uid } from './lib.mjs';

const text = (j) => JSON.stringify(j);

// Sends several prepared requests at the same moment: all connections are
// open and every request is written in the same tick.
async function simultaneously(server, preps) {
  const conns = await Promise.all(preps.map(() => connect(server.port, server.host)));
  for (let i = 0; i < preps.length; i++) conns[i].sock.write(requestBytes(preps[i]));
  const results = await Promise.all(conns.map((c) => c.done));
  return results.map((r) => {
    const rs = parseResponses(r.data);
    assert.equal(rs.length, 1, `one answer per connection, got ${r.data.toString()}`);
    return rs[0];
  });
}

test('concurrent accept + reject on 20 new cards: exactly one decision each', async () => {
  const s = await startServe();
  try {
    const stats = { acceptWon: 0, rejectWon: 0 };
    for (let i = 0; i < 20; i++) {
      const id = uid(`om_cc${i}`);
      const [a, b] = await Promise.all([
        prepare(['--url', s.cardUrl, '--message-id', id, '--operator', 'ou_acc', '--value', '{"action":"accept"}']),
        prepare(['--url', s.cardUrl, '--message-id', id, '--operator', 'ou_rej', '--value', '{"action":"reject"}']),
      ]);
      const [ra, rb] = await simultaneously(s, [a, b]);
      const winners = [ra, rb].filter((r) => r.status === 200);
      const losers = [ra, rb].filter((r) => r.status === 400);
      assert.equal(winners.length, 1, `card ${i}: answers ${ra.status} ${ra.text} / ${rb.status} ${rb.text}`);
      assert.equal(losers.length, 1, `card ${i}: answers ${ra.status} ${ra.text} / ${rb.status} ${rb.text}`);
      const acceptWon = winners[0] === ra;
      const winnerOp = acceptWon ? 'ou_acc' : 'ou_rej';
      const winWord = acceptWon ? '已同意' : '被拒绝';
      assert.ok(text(winners[0].body).includes(winWord), `card ${i}: winner's card ${winners[0].text}`);
      // The loser is told who decided (legacy toast: 400 {"content":…}).
      assert.equal(typeof losers[0].body?.content, 'string', losers[0].text);
      assert.ok(losers[0].body.content.includes(winnerOp), `card ${i}: loser's toast ${losers[0].body.content}`);
      // The store agrees with the winner; one transition only.
      const { card } = await cardShow(s.db, id);
      assert.equal(card.version, FIRST_VERSION, `card ${i}: version ${card.version}`);
      assert.ok(text(card.card).includes(winWord));
      assert.ok(!text(card.card).includes(acceptWon ? '被拒绝' : '已同意'));
      assert.equal(card.history.length, 2);
      stats[acceptWon ? 'acceptWon' : 'rejectWon']++;
    }
    assert.equal(stats.acceptWon + stats.rejectWon, 20);
  } finally {
    const e = await s.stop();
    assert.equal(e.code, 0, s.stderr());
  }
});

test('a decided card stays decided across a restart on the same database', async () => {
  let s = await startServe();
  const db = s.db;
  const id = uid('om_rs');
  const r1 = await trigger(['--url', s.cardUrl, '--message-id', id, '--operator', 'ou_first', '--value', '{"action":"accept"}']);
  assert.equal(r1.status, 200, r1.text);
  const e = await s.stop();
  assert.equal(e.code, 0, `graceful stop: ${JSON.stringify(e)}\n${s.stderr()}`);
  assert.match(s.stderr(), /SIGTERM/, 'serve logs the signal it stopped on');

  s = await startServe({ db });
  try {
    const before = (await cardShow(db, id)).card;
    assert.equal(before.version, FIRST_VERSION);
    const r2 = await trigger(['--url', s.cardUrl, '--message-id', id, '--operator', 'ou_second', '--value', '{"action":"reject"}']);
    assert.equal(r2.status, 400, r2.text);
    assert.ok(r2.body.content.includes('ou_first'), r2.body.content);
    const after = (await cardShow(db, id)).card;
    assert.equal(after.state, before.state);
    assert.equal(after.version, FIRST_VERSION);
    assert.ok(text(after.card).includes('已同意'));
  } finally {
    await s.stop();
  }
});

// --dedupe store (the default) remembers event ids in the database: a
// redelivery after a restart is answered from the first answer and not
// handled again. --dedupe memory forgets them with the process.
for (const [mode, handledAfterRestart] of [['store', 1], ['memory', 2]]) {
  test(`--dedupe ${mode}: the same event after a restart is handled ${handledAfterRestart === 1 ? 'once' : 'again'}`, async () => {
    const side = await startSidecarStub((_, n) => ({ answer: { toast: { content: `answer ${n}` } } }));
    const args = ['--dedupe', mode, '--upstream', `=${side.url}`];
    let s = await startServe({ args });
    const db = s.db;
    const ev = uid('ev_dd').padEnd(32, '0');
    const click = () => trigger(['--url', s.eventUrl, '--format', 'v2', '--event-id', ev, '--message-id', 'om_dd',
      '--value', '{"k":"v"}']);
    try {
      const r1 = await click();
      assert.equal(r1.status, 200, r1.text);
      const r2 = await click(); // same process: the in-memory table in both modes
      assert.equal(text(r2.body), text(r1.body));
      assert.equal(side.hits.length, 1);
      assert.equal((await s.stop()).code, 0, s.stderr());
      s = await startServe({ args, db });
      const r3 = await click();
      assert.equal(r3.status, 200, r3.text);
      assert.equal(side.hits.length, handledAfterRestart, s.stderr());
      if (handledAfterRestart === 1) assert.equal(text(r3.body), text(r1.body), 'the first answer replayed');
      else assert.match(text(r3.body), /answer 2/);
    } finally {
      await s.stop();
      await side.close();
    }
  });
}
