// The baseline: the official Lark Node SDK doing what cardgate's stateless
// route does — verify (SHA-256 + encrypt key), decrypt, answer a fixed card.
// Usage: node node_sdk_server.mjs PORT   (env LARK_VERIFICATION_TOKEN, LARK_ENCRYPT_KEY)
import http from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const lark = require('../tests/interop/node_modules/@larksuiteoapi/node-sdk');
const card = { config: { wide_screen_mode: true }, elements: [{ tag: 'div', text: { tag: 'lark_md', content: '已完成' } }] };
const handler = new lark.CardActionHandler({
  verificationToken: process.env.LARK_VERIFICATION_TOKEN,
  encryptKey: process.env.LARK_ENCRYPT_KEY,
  loggerLevel: lark.LoggerLevel.error,
}, async () => card);
const server = http.createServer(lark.adaptDefault('/webhook/card', handler));
server.keepAliveTimeout = 60000;
server.listen(Number(process.argv[2]), '127.0.0.1', () => console.log('ready'));
