// The built-in workflows driven end to end: `cardgate trigger` fires signed,
// encrypted clicks at a real `cardgate serve`; `cardgate cards show` reads the
// store afterwards.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import { BIN, DONE_DIV, FIRST_VERSION, SECRETS, cardShow, startServe, tagsOf, trigger, uid } from './lib.mjs';

let s;
before(async () => { s = await startServe(); });
after(async () => {
  const e = await s.stop();
  assert.equal(e.code, 0, `serve exit ${JSON.stringify(e)}\n${s.stderr()}`);
});

const legacy = (args) => trigger(['--url', s.cardUrl, ...args]);
const v2 = (args) => trigger(['--url', s.eventUrl, '--format', 'v2', ...args]);
const accept = ['--value', '{"action":"accept"}'];
const reject = ['--value', '{"action":"reject"}'];
const text = (j) => JSON.stringify(j);

describe('publish workflow (seeds 001/002)', () => {
  test('legacy click → 200 with the 已完成 card; stored as done, version 1', async () => {
    const id = uid('om_pub');
    const r = await legacy(['--message-id', id, '--operator', 'ou_pub']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.i18n_elements.zh_cn, DONE_DIV);
    const { card, result } = await cardShow(s.db, id);
    assert.ok(card, `cards show failed: ${result.stderr}`);
    assert.equal(card.message_id, id);
    assert.equal(card.workflow, 'publish');
    assert.equal(card.state, 'done');
    assert.equal(card.version, FIRST_VERSION);
    assert.deepEqual(card.card.i18n_elements.zh_cn, DONE_DIV);
    assert.equal(card.history.length, 1);
    assert.equal(card.history[0].operator, 'ou_pub');
  });

  test('v2 click → 200 {"card":{"type":"raw","data":<the 已完成 card>}}', async () => {
    const id = uid('om_pub2');
    const r = await v2(['--message-id', id]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.card.type, 'raw');
    assert.deepEqual(r.body.card.data.i18n_elements.zh_cn, DONE_DIV);
    const { card } = await cardShow(s.db, id);
    assert.equal(card.state, 'done');
  });

  test('plain (unencrypted) legacy click signed SHA-1 is accepted too', async () => {
    const id = uid('om_pub3');
    const r = await legacy(['--message-id', id, '--no-encrypt']);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.i18n_elements.zh_cn, DONE_DIV);
  });

  test('encrypted legacy click signed SHA-256 + key (the Node SDK scheme) is accepted', async () => {
    const id = uid('om_pub4');
    const r = await legacy(['--message-id', id, '--sign', 'event']);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.i18n_elements.zh_cn, DONE_DIV);
  });
});

describe('the trigger line serve prints', () => {
  test('pasted into a shell, it clicks the demo card: HTTP 200 with the 已完成 card', () => {
    const line = s.stdout().split('\n').find((l) => /\btrigger\b.*--url/.test(l));
    assert.ok(line, `no trigger line in serve's stdout:\n${s.stdout()}`);
    assert.ok(line.includes(s.cardUrl), line);
    // The line names the program as it was started (argv[0]): paste it as is.
    const cmd = line.trim();
    assert.ok(cmd.startsWith(`${BIN} trigger `), `the line does not start with the program: ${line}`);
    const r = spawnSync('sh', ['-c', cmd], {
      encoding: 'utf8',
      env: { ...process.env, LARK_VERIFICATION_TOKEN: SECRETS.token, LARK_ENCRYPT_KEY: SECRETS.key },
    });
    assert.equal(r.status, 0, `${line}\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /^HTTP 200\n/);
    assert.deepEqual(JSON.parse(r.stdout.slice('HTTP 200\n'.length)).i18n_elements.zh_cn, DONE_DIV);
  });
});

describe('approval workflow (seed 004 states on Lark)', () => {
  test('accept → 已同意, buttons gone; a second click → 400 toast naming the decider', async () => {
    const id = uid('om_ap');
    const r = await legacy(['--message-id', id, '--operator', 'ou_alice', ...accept]);
    assert.equal(r.status, 200, r.text);
    assert.ok(text(r.body).includes('已同意'), text(r.body));
    assert.ok(!text(r.body).includes('待处理'), 'status still pending');
    assert.ok(!tagsOf(r.body).includes('button'), `buttons left: ${text(r.body)}`);

    const { card: c1 } = await cardShow(s.db, id);
    assert.equal(c1.workflow, 'approval');
    assert.equal(c1.version, FIRST_VERSION);
    const decided = c1.state;
    assert.equal(decided, 'accepted');

    // Somebody else clicks reject on the decided card (lark.md §1.4: 400 toast).
    const r2 = await legacy(['--message-id', id, '--operator', 'ou_bob', ...reject]);
    assert.equal(r2.status, 400, r2.text);
    assert.equal(r2.code, 1, 'trigger exits 1 on a non-2xx answer');
    assert.equal(typeof r2.body.content, 'string', r2.text);
    assert.ok(r2.body.content.includes('ou_alice'), `toast does not name the decider: ${r2.body.content}`);

    const { card: c2 } = await cardShow(s.db, id);
    assert.equal(c2.state, decided, 'state unchanged by the late click');
    assert.equal(c2.version, FIRST_VERSION, 'version unchanged by the late click');
    assert.ok(text(c2.card).includes('已同意'));
    assert.equal(c2.history.length, 2);
    assert.deepEqual(c2.history.map((h) => h.operator), ['ou_alice', 'ou_bob']);
  });

  test('reject → 被拒绝, buttons gone', async () => {
    const id = uid('om_rj');
    const r = await legacy(['--message-id', id, '--operator', 'ou_bob', ...reject]);
    assert.equal(r.status, 200, r.text);
    assert.ok(text(r.body).includes('被拒绝'), text(r.body));
    assert.ok(!text(r.body).includes('已同意'));
    assert.ok(!tagsOf(r.body).includes('button'));
    const { card } = await cardShow(s.db, id);
    assert.ok(text(card.card).includes('被拒绝'));
    assert.equal(card.state, 'rejected');
    assert.equal(card.version, FIRST_VERSION);
  });

  test('v2: accept → card; second click → 200 {"toast":…} naming the decider', async () => {
    const id = uid('om_ap2');
    const r = await v2(['--message-id', id, '--operator', 'ou_carol', ...accept]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.card.type, 'raw');
    assert.ok(text(r.body.card.data).includes('已同意'));
    const r2 = await v2(['--message-id', id, '--operator', 'ou_dave', ...reject]);
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.code, 0);
    assert.equal(typeof r2.body.toast?.content, 'string', r2.text);
    assert.ok(r2.body.toast.content.includes('ou_carol'), r2.body.toast.content);
    assert.equal(r2.body.card, undefined, 'no card change on a decided card');
  });
});

describe('schema 2.0 specifics', () => {
  test('a duplicate event_id gets the same answer and is handled once', async () => {
    const id = uid('om_dup');
    const ev = uid('ev').replace('_', '');
    const r1 = await v2(['--message-id', id, '--event-id', ev, '--operator', 'ou_x', ...accept]);
    assert.equal(r1.status, 200, r1.text);
    // Redelivery: same event id, another random nonce/timestamp/ciphertext.
    const r2 = await v2(['--message-id', id, '--event-id', ev, '--operator', 'ou_x', ...accept]);
    assert.equal(r2.status, r1.status);
    assert.deepEqual(r2.body, r1.body);
    const { card } = await cardShow(s.db, id);
    assert.equal(card.history.length, 1, `handled ${card.history.length} times`);
    assert.equal(card.version, FIRST_VERSION);
    // A new event id on the same card is a new click (now: a toast).
    const r3 = await v2(['--message-id', id, '--operator', 'ou_x', ...accept]);
    assert.equal(r3.status, 200);
    assert.ok(r3.body.toast, r3.text);
    assert.equal((await cardShow(s.db, id)).card.history.length, 2);
  });

  test('url.preview.get is answered 200 with a JSON object', async () => {
    const r = await v2(['--kind', 'url_preview', '--message-id', uid('om_up'), '--url-to-preview', 'https://example.com/x']);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.code, 0);
    assert.equal(typeof r.body, 'object');
    assert.ok(r.body !== null && !Array.isArray(r.body), r.text);
  });
});
