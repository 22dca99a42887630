// The deadline when the store is slow: another process holds SQLite's write
// lock. Lark must still be answered within the deadline ("keep the card"),
// and a click answered that way must not be applied later behind the user's
// back (the card they see did not change).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, test } from 'node:test';

import { run, sleep, startServe, trigger, uid } from './lib.mjs';

function holdWriteLock(db) {
  const p = spawn('sqlite3', [db], { stdio: ['pipe', 'ignore', 'inherit'] });
  p.stdin.write('BEGIN IMMEDIATE;\nINSERT INTO actions(message_id, at_ms) VALUES (\'lock\', 0);\n');
  return {
    release: () => new Promise((r) => { p.on('close', r); p.stdin.end('ROLLBACK;\n'); }),
  };
}

describe('a busy store', () => {
  test('clicks are answered "keep" within the deadline and not applied later', async () => {
    const s = await startServe({ args: ['--deadline-ms', '600'] });
    try {
      // a first click creates the schema and proves the server works
      const warm = await trigger(['--url', s.cardUrl, '--message-id', uid('om_warm'), '--value', '{"action":"accept"}']);
      assert.equal(warm.status, 200, warm.text);

      const lock = holdWriteLock(s.db);
      await sleep(200); // the lock is taken
      const ids = [uid('om_busy'), uid('om_busy')];
      const t0 = Date.now();
      const rs = await Promise.all(ids.map((id) =>
        trigger(['--url', s.cardUrl, '--message-id', id, '--value', '{"action":"accept"}'])));
      const ms = Date.now() - t0;
      for (const r of rs) {
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.body, {}, 'answered "keep the card"');
      }
      assert.ok(ms < 2500, `answered after ${ms} ms (deadline 600 ms)`);
      await sleep(300);
      await lock.release(); // the store gets the lock well within its busy timeout
      await sleep(800);
      for (const id of ids) {
        const show = await run(['cards', 'show', id, '--db', s.db, '--json']);
        assert.equal(show.code, 1, `card ${id} was applied after its "keep" answer:\n${show.stdout}`);
      }
      assert.match(s.stderr(), /deadline passed before the store got to it; not applied/);
      // and the store works again
      const after = await trigger(['--url', s.cardUrl, '--message-id', uid('om_after'), '--value', '{"action":"accept"}']);
      assert.equal(after.status, 200, after.text);
      assert.ok(JSON.stringify(after.body).includes('已同意'), after.text);
    } finally {
      await s.stop();
    }
  });
});
