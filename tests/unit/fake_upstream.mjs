// A fake sidecar upstream for tests/unit/test_upstream.c. Started with `node`,
// it listens on 127.0.0.1 port 0 and prints {"port":N} as its first stdout
// line. What it answers depends on the request path:
//   /card    a card and a toast        /toast   a toast only
//   /custom  {"status":418,...}        /keep    {"keep":true}
//   /template a template card          /inline  an inline preview
//   /html    502-free HTML page (200)  /nonjson plain text (200)
//   /shape   JSON of an unknown shape  /types   a toast whose content is 42
//   /huge    a 2 MiB JSON answer       /500     HTTP 500 JSON
//   /slow?ms=N  a card after N ms      /echo    {"keep":true}
// Control: one JSON command per stdin line, one JSON answer per stdout line:
//   {"cmd":"last"}  → {"body":<the last request body, parsed>,"headers":{…},
//                      "path":…,"count":N}
// The process exits when stdin closes.
import http from 'node:http';
import readline from 'node:readline';

let last = null;
let count = 0;

const CARD = { config: { update_multi: true }, elements: [{ tag: 'div', text: { tag: 'plain_text', content: 'approved ✓' } }] };

function json(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8');
    let body;
    try { body = JSON.parse(text); } catch { body = text; }
    const u = new URL(req.url, 'http://x');
    count++;
    last = { body, headers: req.headers, path: u.pathname, method: req.method, count };
    switch (u.pathname) {
      case '/card': return json(res, 200, { card: CARD, toast: { type: 'success', content: '已通过', i18n: { en_us: 'Approved' } } });
      case '/toast': return json(res, 200, { toast: { type: 'info', content: 'hello' } });
      case '/custom': return json(res, 200, { status: 418, body: { teapot: true } });
      case '/keep': return json(res, 200, { keep: true });
      case '/echo': return json(res, 200, { keep: true });
      case '/template': return json(res, 200, { template: { id: 'AAq1', variables: { n: 1 }, version: '1.0.0' } });
      case '/inline': return json(res, 200, { inline: { title: 'Preview', url: 'https://example.com/x' } });
      case '/html':
        res.writeHead(200, { 'Content-Type': 'text/html' });
        return res.end('<html><body><h1>Welcome to nginx!</h1></body></html>\n');
      case '/nonjson':
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        return res.end('ok');
      case '/shape': return json(res, 200, { result: 'approved' });
      case '/types': return json(res, 200, { toast: { type: 'info', content: 42 } });
      case '/huge': return json(res, 200, { card: { pad: 'x'.repeat(2 * 1024 * 1024) } });
      case '/500': return json(res, 500, { error: 'boom' });
      case '/slow': {
        const ms = Number(u.searchParams.get('ms') || 1000);
        setTimeout(() => json(res, 200, { card: CARD }), ms);
        return undefined;
      }
      default: return json(res, 404, { error: 'no such path' });
    }
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch { cmd = {}; }
  if (cmd.cmd === 'last') process.stdout.write(JSON.stringify(last || {}) + '\n');
  else process.stdout.write(JSON.stringify({ error: 'unknown command' }) + '\n');
});
rl.on('close', () => process.exit(0));
