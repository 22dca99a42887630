// `cardgate send` against the fake Lark Open API (tests/unit/fake_lark_openapi.mjs):
// the real program fetches a tenant token, POSTs im/v1/messages, records the
// card in the store — and a click on that message id at `cardgate serve` on
// the same store updates the recorded card.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';

import { SRC, cardShow, makeTmp, run, startFakeProcess, startServe, trigger } from './lib.mjs';

const APP = { id: 'cli_test', secret: 'secret_test' }; // the fake's defaults
const CARD = {
  config: { update_multi: true },
  header: { title: { tag: 'plain_text', content: '发布' } },
  elements: [{ tag: 'markdown', content: 'hello **world**' }],
};
const SEND_ROUTE = 'POST /open-apis/im/v1/messages';

let fake;
before(async () => { fake = await startFakeProcess('fake_lark_openapi.mjs'); });
after(() => fake.stop());
beforeEach(async () => { await fake.cmd({ cmd: 'reset' }); });

const creds = (secret = APP.secret) => ({ LARK_APP_ID: APP.id, LARK_APP_SECRET: secret });
const newDb = () => path.join(makeTmp('cg-send-'), 'cg.db');
const send = (args, { env = creds(), input } = {}) =>
  run(['send', '--base-url', fake.base, ...args], { env, input });

function cardFile(card = CARD) {
  const f = path.join(makeTmp('cg-send-'), 'card.json');
  fs.writeFileSync(f, JSON.stringify(card, null, 2));
  return f;
}

function noSecrets(r, stats) {
  const all = r.stdout + r.stderr;
  assert.ok(!all.includes(APP.secret), 'the app secret was printed');
  for (const t of stats.auths) if (t) assert.ok(!all.includes(t), 'a tenant token was printed');
}

describe('cardgate send', () => {
  test('--help documents the options, with examples', async () => {
    const r = await run(['send', '--help']);
    assert.equal(r.code, 0);
    for (const w of ['--card', '--workflow', '--to', '--to-type', '--reply-to', '--app-id', '--app-secret',
      'LARK_APP_ID', 'LARK_APP_SECRET', '--base-url', '--lark', '--db', '--uuid', '--timeout-ms', '--json', 'Examples'])
      assert.ok(r.stdout.includes(w), w);
    const top = await run(['--help']);
    assert.match(top.stdout, /\bsend\b/);
  });

  test('a card file to a chat: one token fetch, one POST, recorded; exit 0', async () => {
    const db = newDb();
    const r = await send(['--card', cardFile(), '--to', 'oc_room1', '--db', db]);
    assert.equal(r.code, 0, r.stderr);
    const m = r.stdout.match(/^sent (om_\S+) to chat_id oc_room1\n$/);
    assert.ok(m, r.stdout);
    const id = m[1];

    const st = await fake.cmd({ cmd: 'stats' });
    assert.equal(st.token_fetches, 1);
    assert.deepEqual(st.routes, { [SEND_ROUTE]: 1 });
    assert.equal(st.last.query.receive_id_type, 'chat_id');
    assert.equal(st.last.body.receive_id, 'oc_room1');
    assert.equal(st.last.body.msg_type, 'interactive');
    assert.equal(typeof st.last.body.content, 'string', 'content is the card as a JSON string');
    assert.deepEqual(JSON.parse(st.last.body.content), CARD);
    assert.match(st.last.body.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    noSecrets(r, st);

    const { card, result } = await cardShow(db, id);
    assert.ok(card, `cards show: ${result.stderr}`);
    assert.equal(card.platform, 'lark');
    assert.equal(card.workflow, null);
    assert.equal(card.state, null);
    assert.equal(card.version, 1);
    assert.deepEqual(card.card, CARD);
  });

  test('the approval workflow to a user; a click at serve on the same store updates that card', async () => {
    const db = newDb();
    const r = await send(['--workflow', 'approval', '--to', 'ou_alice', '--db', db, '--uuid', 'fixed-key-1']);
    assert.equal(r.code, 0, r.stderr);
    const m = r.stdout.match(/^sent (om_\S+) to open_id ou_alice\n$/);
    assert.ok(m, r.stdout);
    const id = m[1];

    const st = await fake.cmd({ cmd: 'stats' });
    assert.equal(st.token_fetches, 1);
    assert.deepEqual(st.routes, { [SEND_ROUTE]: 1 });
    assert.equal(st.last.query.receive_id_type, 'open_id');
    assert.equal(st.last.body.uuid, 'fixed-key-1');
    const sent = JSON.parse(st.last.body.content);
    const text = JSON.stringify(sent);
    assert.ok(text.includes('待处理') && text.includes('"action":"accept"'), text);
    assert.ok(!text.includes('${'), 'the initial card is rendered');

    const { card: c0, result } = await cardShow(db, id);
    assert.ok(c0, `cards show: ${result.stderr}`);
    assert.equal(c0.workflow, 'approval');
    assert.equal(c0.state, 'pending');
    assert.equal(c0.version, 1);
    assert.deepEqual(c0.card, sent);

    const s = await startServe({ db });
    try {
      const t = await trigger(['--url', s.cardUrl, '--message-id', id, '--operator', 'ou_bob', '--value', '{"action":"accept"}']);
      assert.equal(t.status, 200, t.text);
      assert.ok(JSON.stringify(t.body).includes('已同意'), t.text);
    } finally {
      const e = await s.stop();
      assert.equal(e.code, 0, s.stderr());
    }
    const { card: c1 } = await cardShow(db, id);
    assert.equal(c1.workflow, 'approval');
    assert.equal(c1.state, 'accepted');
    assert.equal(c1.version, 2, 'the recorded card (version 1) was the one updated');
    assert.equal(c1.history.length, 1);
    assert.equal(c1.history[0].operator, 'ou_bob');
  });

  test('--json prints the API data object; --reply-to replies; --card - reads stdin', async () => {
    const db = newDb();
    let r = await send(['--card', cardFile(), '--to', 'u123', '--to-type', 'user_id', '--db', db, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const data = JSON.parse(r.stdout);
    assert.match(data.message_id, /^om_/);
    assert.equal(data.msg_type, 'interactive');
    let st = await fake.cmd({ cmd: 'stats' });
    assert.equal(st.last.query.receive_id_type, 'user_id');

    r = await send(['--card', '-', '--reply-to', data.message_id, '--db', db], { input: JSON.stringify(CARD) });
    assert.equal(r.code, 0, r.stderr);
    const m = r.stdout.match(/^sent (om_\S+) in reply to (\S+)\n$/);
    assert.ok(m, r.stdout);
    assert.equal(m[2], data.message_id);
    st = await fake.cmd({ cmd: 'stats' });
    assert.equal(st.token_fetches, 2, 'one fetch per run');
    assert.equal(st.routes[`POST /open-apis/im/v1/messages/${data.message_id}/reply`], 1);
    assert.deepEqual(JSON.parse(st.last.body.content), CARD);
    assert.ok((await cardShow(db, m[1])).card, 'the reply is recorded too');
  });

  test('--workflow FILE sends its initial card; a broken workflow file is refused (exit 1)', async () => {
    const dir = makeTmp('cg-send-');
    const wf = JSON.parse(fs.readFileSync(path.join(SRC, 'workflows', 'approval.json'), 'utf8'));
    wf.name = 'my_approval';
    const good = path.join(dir, 'my.json');
    fs.writeFileSync(good, JSON.stringify(wf));
    const db = newDb();
    let r = await send(['--workflow', good, '--to', 'oc_room', '--db', db]);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.match(/^sent (om_\S+) /)[1];
    const { card } = await cardShow(db, id);
    assert.equal(card.workflow, 'my_approval');
    assert.equal(card.state, wf.initial);

    wf.initial = 'nowhere';
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify(wf));
    r = await send(['--workflow', bad, '--to', 'oc_room', '--db', db]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad\.json: \$\.initial: unknown state "nowhere"/);
    const st = await fake.cmd({ cmd: 'stats' });
    assert.equal(st.api_calls, 1, 'only the good workflow was sent');
  });

  test('wrong secret (10014): exit 1 naming LARK_APP_SECRET; nothing sent or recorded', async () => {
    const db = newDb();
    const r = await send(['--workflow', 'approval', '--to', 'oc_room', '--db', db], { env: creds('not-the-secret') });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /10014/);
    assert.match(r.stderr, /LARK_APP_SECRET/);
    assert.match(r.stderr, /log id logid-\d+/);
    assert.ok(!r.stderr.includes('not-the-secret'), 'the secret was printed');
    const st = await fake.cmd({ cmd: 'stats' });
    assert.equal(st.token_fetches, 1);
    assert.equal(st.api_calls, 0);
    const list = await run(['cards', 'list', '--db', db, '--json']);
    assert.deepEqual(JSON.parse(list.stdout), []);
  });

  test('Lark refusals: exit 1 with code, msg, log id and what to do', async () => {
    const cases = [
      { code: 230006, msg: 'Bot ability is not activated.', want: /Bot feature/ },
      { code: 99991672, msg: 'Access denied. One of the following scopes is required: [im:message]', want: /scope/ },
      { code: 230002, msg: 'The bot can not be outside the group.', want: /add the bot/ },
    ];
    for (const c of cases) {
      await fake.cmd({ cmd: 'fault', on: 'api', mode: 'code', code: c.code, msg: c.msg, status: 400 });
      const r = await send(['--card', cardFile(), '--to', 'oc_room', '--db', newDb()]);
      assert.equal(r.code, 1, `${c.code}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.ok(r.stderr.includes(`code ${c.code}`), r.stderr);
      assert.ok(r.stderr.includes(c.msg), r.stderr);
      assert.match(r.stderr, /log id logid-\d+/);
      assert.match(r.stderr, c.want);
    }
  });

  test('an unreachable Open API: exit 1 naming the base URL', async () => {
    const r = await run(['send', '--base-url', 'http://127.0.0.1:1', '--card', cardFile(), '--to', 'oc_x',
      '--db', newDb(), '--timeout-ms', '2000'], { env: creds() });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /127\.0\.0\.1:1/);
  });

  test('a card file that is not a JSON object, or an unreadable one: exit 1', async () => {
    const bad = cardFile([1, 2]);
    let r = await send(['--card', bad, '--to', 'oc_x', '--db', newDb()]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /JSON object/);
    r = await send(['--card', path.join(makeTmp(), 'missing.json'), '--to', 'oc_x', '--db', newDb()]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot read/);
    const st = await fake.cmd({ cmd: 'stats' });
    assert.equal(st.token_fetches + st.api_calls, 0);
  });

  test('usage errors exit 2 and say what to do', async () => {
    const f = cardFile();
    const cases = [
      [['send'], /exactly one of --card/],
      [['send', '--card', f], /exactly one of --to/],
      [['send', '--card', f, '--workflow', 'approval', '--to', 'oc_x'], /exactly one of --card/],
      [['send', '--card', f, '--to', 'oc_x', '--reply-to', 'om_y'], /exactly one of --to/],
      [['send', '--card', f, '--to', 'someone'], /--to-type/],
      [['send', '--card', f, '--to', 'x', '--to-type', 'phone'], /--to-type 'phone'/],
      [['send', '--card', f, '--reply-to', 'om_y', '--to-type', 'chat_id'], /--to-type goes with --to/],
      [['send', '--card', f, '--to', 'oc_x', '--in-thread'], /--in-thread/],
      [['send', '--workflow', 'no_such_flow', '--to', 'oc_x'], /no built-in workflow.*approval/],
      [['send', '--card', f, '--to', 'oc_x', '--lark', '--base-url', fake.base], /--lark and --base-url/],
      [['send', '--card', f, '--to', 'oc_x', '--base-url', 'http://example.com'], /--base-url/],
      [['send', '--card', f, '--to', 'oc_x', '--timeout-ms', '0'], /--timeout-ms/],
      [['send', '--card', f, '--to', 'oc_x', '--uuid', 'x'.repeat(51)], /--uuid/],
      [['send', '--card', f, '--to', 'oc_x', '--frob'], /unknown option '--frob'/],
      [['send', '--card', f, '--to', 'oc_x', 'extra'], /unexpected argument 'extra'/],
      [['send', '--card'], /needs a value/],
    ];
    for (const [args, want] of cases) {
      const r = await run(args, { env: creds() });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, want, args.join(' '));
      assert.match(r.stderr, /Try 'cardgate send --help'/);
    }
    // No credentials anywhere.
    for (const [env, want] of [[{ LARK_APP_ID: '', LARK_APP_SECRET: '' }, /LARK_APP_ID/],
      [{ LARK_APP_ID: APP.id, LARK_APP_SECRET: '' }, /LARK_APP_SECRET/]]) {
      const r = await run(['send', '--card', f, '--to', 'oc_x'], { env });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, want);
    }
    const st = await fake.cmd({ cmd: 'stats' });
    assert.equal(st.token_fetches + st.api_calls, 0, 'a usage error sends nothing');
  });
});
