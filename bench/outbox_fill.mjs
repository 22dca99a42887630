// Prepares bench/run.sh's outbox section: makes `cardgate emulate` hold N
// shared cards and N answered callback tokens, then writes SQL that fills a
// cardgate store with N pending outbox entries — one per card, each with its
// click's token (unused, 30 min budget) — so every entry goes out as an
// accepted POST /open-apis/interactive/v1/card/update.
//
// The cards are sent through the emulator's im/v1 API; each is clicked with
// POST /emulator/click, which signs the callback and POSTs it to a stub app
// (this process, answering {} = keep the card): any answer marks the token
// answered, so the updates are not early.
//   node bench/outbox_fill.mjs EMULATOR_BASE N OUT.sql [CONCURRENCY]
// LARK_APP_ID / LARK_APP_SECRET: the emulator's app credentials.
import fs from 'node:fs';
import http from 'node:http';

const [base, nStr, out, concStr = '32'] = process.argv.slice(2);
const N = Number(nStr);
const CONC = Number(concStr);
const { LARK_APP_ID: appId, LARK_APP_SECRET: appSecret } = process.env;

const app = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 2 });
    res.end('{}');
  });
});
await new Promise((r) => app.listen(0, '127.0.0.1', r));

async function call(method, path, body, headers = {}) {
  const r = await fetch(base + path, {
    method,
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const j = await r.json();
  if (!r.ok || (j.code !== undefined && j.code !== 0)) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(j)}`);
  return j;
}

await call('POST', '/emulator/config', { app_url: `http://127.0.0.1:${app.address().port}` });
const tok = (await call('POST', '/open-apis/auth/v3/tenant_access_token/internal', { app_id: appId, app_secret: appSecret }))
  .tenant_access_token;
const card = (text) => ({ config: { update_multi: true }, elements: [{ tag: 'div', text: { tag: 'plain_text', content: text } }] });

const rows = new Array(N);
let next = 0;
async function worker() {
  for (let i = next++; i < N; i = next++) {
    const sent = await call('POST', '/open-apis/im/v1/messages?receive_id_type=open_id',
      { receive_id: `ou_bench_${i % 1000}`, msg_type: 'interactive', content: JSON.stringify(card(`please decide #${i}`)) },
      { Authorization: `Bearer ${tok}` });
    const mid = sent.data.message_id;
    const c = await call('POST', '/emulator/click', { message_id: mid, value: { bench: 'outbox' } });
    if (c.status !== 200 || !c.token) throw new Error(`click ${mid}: ${JSON.stringify(c)}`);
    rows[i] = [mid, c.token];
  }
}
await Promise.all(Array.from({ length: CONC }, worker));
app.close();

const now = Date.now();
const q = (s) => `'${s.replace(/'/g, "''")}'`;
const lines = ['BEGIN;'];
for (let i = 0; i < N; i++) {
  const [mid, token] = rows[i];
  lines.push(`INSERT INTO outbox(platform, message_id, update_token, token_uses, token_expires_at_ms, card_json, state, attempts, next_attempt_at_ms, last_error, created_at_ms, updated_at_ms) VALUES('lark',${q(mid)},${q(token)},0,${now + 1800000},${q(JSON.stringify(card(`done #${i}`)))},'pending',0,${now},NULL,${now},${now});`);
}
lines.push('COMMIT;');
fs.writeFileSync(out, lines.join('\n') + '\n');
console.log(`emulator holds ${N} cards with answered tokens; ${out} written`);
