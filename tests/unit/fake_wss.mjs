// A wss:// echo server for tests/unit/test_ws.c: node:https + the `ws` npm
// package (the one the vendors' Node SDKs use). Certificate and key come
// from $CG_WSS_CERT and $CG_WSS_KEY (PEM files the test generates). It
// listens on 127.0.0.1 port 0 and prints {"port":N} as its first stdout
// line; every message is echoed back with its type. Control: one JSON
// command per stdin line, one JSON answer per stdout line:
//   {"cmd":"stats"} → {"connections":N,"messages":N}
// The process exits when stdin closes.
import fs from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import readline from 'node:readline';

const src = process.env.CG_SOURCE_DIR;
const require = createRequire(`${src}/tests/interop/package.json`);
const { WebSocketServer } = require('ws');

let connections = 0;
let messages = 0;

const server = https.createServer({
  cert: fs.readFileSync(process.env.CG_WSS_CERT),
  key: fs.readFileSync(process.env.CG_WSS_KEY),
});
server.on('tlsClientError', () => {}); // a client that refused our cert
const wss = new WebSocketServer({ server, maxPayload: 32 * 1024 * 1024 });
wss.on('connection', (sock) => {
  connections++;
  sock.on('message', (data, isBinary) => {
    messages++;
    sock.send(data, { binary: isBinary });
  });
  sock.on('error', () => {});
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch { cmd = {}; }
  if (cmd.cmd === 'stats') process.stdout.write(`${JSON.stringify({ connections, messages })}\n`);
  else process.stdout.write('{"error":"unknown command"}\n');
});
rl.on('close', () => process.exit(0));
