// A store (marketplace) app end to end: `cardgate emulate --store-app` plays
// Lark, `cardgate serve --lark-app-type store` the app. A slow sidecar
// click's late update needs a tenant token of the click's tenant; serve has
// no app_ticket yet, so it asks for a resend, the emulator pushes an
// app_ticket event (encrypted, signed) to serve's event URL, and the update
// goes out with that tenant's token (lark.md §4.2–§4.3, seed 003). After a
// restart the stored ticket is used without another resend.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { run, sleep, startEmulator, startFakeProcess, startServe } from './lib.mjs';

const APP = { LARK_APP_ID: 'cli_store_e2e', LARK_APP_SECRET: 'store e2e secret' };
const UPDATE = 'POST /open-apis/interactive/v1/card/update';
const RESEND = 'POST /open-apis/auth/v3/app_ticket/resend';
const APP_TOKEN = 'POST /open-apis/auth/v3/app_access_token';
const TENANT_TOKEN = 'POST /open-apis/auth/v3/tenant_access_token';
const SHARED_CARD = {
  config: { update_multi: true },
  elements: [{ tag: 'div', text: { tag: 'plain_text', content: 'please decide' } }],
};

let emu;
let up;
let s;

const serveArgs = () => [
  '--deadline-ms', '2500',
  '--upstream', `value.action == "slow"=${up.base}/slow?ms=3500`,
  '--upstream-timeout-ms', '10000',
  '--lark-base-url', emu.base,
  '--lark-app-type', 'store',
];

before(async () => {
  emu = await startEmulator({ env: APP, args: ['--store-app'] });
  up = await startFakeProcess('fake_upstream.mjs');
  s = await startServe({ args: serveArgs(), env: APP });
  const c = await emu.post('/emulator/config', { app_url: s.base });
  assert.equal(c.status, 200);
  assert.equal(c.body.store_app, true);
});

after(async () => {
  await s?.stop();
  up?.stop();
  const e = await emu?.stop();
  assert.equal(e?.code, 0, `emulate exit ${JSON.stringify(e)}\n${emu?.stderr()}`);
});

const routes = (st, route) => st.calls.filter((c) => c.route === route);

async function waitFor(fn, ms = 15000) {
  const t0 = Date.now();
  for (;;) {
    const st = await emu.state();
    if (fn(st)) return st;
    if (Date.now() - t0 > ms) return st;
    await sleep(100);
  }
}

// The emulator's own tenant token for sending the card (self-built path).
async function sendCard() {
  return emu.send(SHARED_CARD, { token: await emu.token(APP.LARK_APP_ID, APP.LARK_APP_SECRET) });
}

describe('a store app against cardgate emulate --store-app', () => {
  test('no ticket: resend, pushed app_ticket event, late update with the tenant\'s token', async () => {
    const id = await sendCard();
    const r = await emu.post('/emulator/click', { message_id: id, value: { action: 'slow' }, tenant_key: 'tnt_e2e_a' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.answer, {}, 'keep the card');
    assert.equal(r.body.body.tenant_key, 'tnt_e2e_a');
    const token = r.body.token;

    const st = await waitFor((x) => routes(x, UPDATE).some((u) => u.accepted));
    const u = routes(st, UPDATE);
    assert.equal(u.length, 1, JSON.stringify(st.calls.map((c) => [c.route, c.code])));
    assert.equal(u[0].accepted, true, JSON.stringify(u[0]));
    assert.equal(u[0].token, token);
    assert.equal(u[0].tenant_key, 'tnt_e2e_a', 'sent with the click tenant\'s token');
    assert.equal(routes(st, RESEND).length, 1);
    assert.ok(routes(st, APP_TOKEN).some((c) => c.code === 0));
    assert.ok(routes(st, TENANT_TOKEN).some((c) => c.code === 0));
    assert.equal(st.app_ticket_pushes.length, 1);
    assert.equal(st.app_ticket_pushes[0].status, 200, JSON.stringify(st.app_ticket_pushes[0]));
    assert.equal(st.app_ticket_pushes[0].encrypted, true);
    assert.equal(st.messages[id].card.elements[0].text.content, 'approved ✓');

    const log = s.stdout() + s.stderr();
    assert.match(log, /app_ticket event for app cli_store_e2e: ticket updated/);
    assert.ok(!/tk-emu-/.test(log), 'the app_ticket is never logged');
    assert.ok(!log.includes(token), 'the update token is never logged');

    const list = await run(['outbox', 'list', '--db', s.db, '--json']);
    assert.equal(list.code, 0, list.stderr);
    const e = JSON.parse(list.stdout);
    assert.equal(e[0].state, 'delivered');
  });

  test('after a restart the stored ticket serves: no second resend', async () => {
    const db = s.db;
    await s.stop();
    s = await startServe({ args: serveArgs(), env: APP, db });
    await emu.post('/emulator/config', { app_url: s.base });
    const id = await sendCard();
    const r = await emu.post('/emulator/click', { message_id: id, value: { action: 'slow' }, tenant_key: 'tnt_e2e_b' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const st = await waitFor((x) => routes(x, UPDATE).filter((u) => u.accepted).length >= 2);
    const u = routes(st, UPDATE).filter((x) => x.accepted);
    assert.equal(u.length, 2, JSON.stringify(st.calls.map((c) => [c.route, c.code])));
    assert.equal(u[1].tenant_key, 'tnt_e2e_b');
    assert.equal(routes(st, RESEND).length, 1, 'the ticket came from the store');
    assert.match(s.stdout() + s.stderr(), /app_ticket from the store loaded/);
  });
});
