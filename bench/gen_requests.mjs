// Writes N signed + AES-encrypted Lark legacy card clicks, one per line:
// timestamp \t nonce \t signature \t body — for bench/wrk_requests.lua.
// Independent of cardgate: Node's own crypto. Usage:
//   node gen_requests.mjs OUT N VERIFICATION_TOKEN ENCRYPT_KEY [same|distinct] [VALUE_JSON] [MESSAGE_ID]
// VALUE_JSON: action.value (default the publish button's); MESSAGE_ID: the
// card's id in "same" mode (default om_bench_fixed).
import crypto from 'node:crypto';
import fs from 'node:fs';

const [out, nStr, token, key, mode = 'same', valueJson, fixedId = 'om_bench_fixed'] = process.argv.slice(2);
const value = valueJson ? JSON.parse(valueJson) : { button_type: 'public_publish', button_id: '1626958617426' };
const n = Number(nStr);
const aesKey = crypto.createHash('sha256').update(key).digest();
const ts = String(Math.floor(Date.now() / 1000));
const fd = fs.openSync(out, 'w');
let chunk = [];
for (let i = 0; i < n; i++) {
  const mid = mode === 'distinct' ? `om_bench_${i}` : fixedId;
  const plain = JSON.stringify({
    open_id: `ou_bench_${i % 1000}`, open_message_id: mid, open_chat_id: 'oc_bench',
    tenant_key: 'tenant_bench', token: `c-${crypto.randomBytes(8).toString('hex')}`,
    action: { value, tag: 'button' },
  });
  const iv = crypto.randomBytes(16);
  const c = crypto.createCipheriv('aes-256-cbc', aesKey, iv);
  const enc = Buffer.concat([iv, c.update(plain, 'utf8'), c.final()]).toString('base64');
  const body = JSON.stringify({ encrypt: enc });
  const nonce = crypto.randomBytes(8).toString('hex');
  // SHA-256 + encrypt key: the scheme the official Node SDK checks on encrypted
  // card callbacks (lark.md §0.4); cardgate accepts it (and SHA-1 + token).
  const sig = crypto.createHash('sha256').update(ts + nonce + key + body).digest('hex');
  chunk.push(`${ts}\t${nonce}\t${sig}\t${body}\n`);
  if (chunk.length === 10000) { fs.writeSync(fd, chunk.join('')); chunk = []; }
}
fs.writeSync(fd, chunk.join(''));
fs.closeSync(fd);
