// Configuration by file, environment and flags (flags win), what the logs
// may never contain, and stateless workflows — against the real program.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { SECRETS, SRC, makeTmp, run, startServe, trigger, uid } from './lib.mjs';

describe('--config FILE', () => {
  test('secrets and paths from the file; a flag overrides the file', async () => {
    const dir = makeTmp();
    const cfg = path.join(dir, 'cardgate.json');
    fs.writeFileSync(cfg, JSON.stringify({
      verification_token: SECRETS.token,
      encrypt_key: SECRETS.key,
      card_path: '/hooks/from-file',
      deadline_ms: 2000,
      log_level: 'debug',
    }));
    // No secrets in the environment: they come from the file only.
    const s = await startServe({ secrets: null, args: ['--config', cfg, '--card-path', '/hooks/from-flag'] });
    try {
      const ok = await trigger(['--url', `${s.base}/hooks/from-flag`, '--message-id', uid('om_cfg')]);
      assert.equal(ok.status, 200, ok.text);
      // the file's path was overridden by the flag
      const gone = await trigger(['--url', `${s.base}/hooks/from-file`, '--message-id', uid('om_cfg')]);
      assert.equal(gone.status, 404, gone.text);
      // the file's secrets are enforced
      const bad = await trigger(['--url', `${s.base}/hooks/from-flag`, '--message-id', uid('om_cfg'), '--bad-signature']);
      assert.equal(bad.status, 401, bad.text);
    } finally {
      await s.stop();
    }
  });

  test('a broken config file is refused with the file, the key and what is wrong', async () => {
    const dir = makeTmp();
    const cases = [
      ['{"port": 80, "prot": 81}', /unknown key "prot"/],
      ['{"port": "eighty"}', /--port expects a whole number/],
      ['{"no_builtin": "yes"}', /\$\.no_builtin must be true or false/],
      ['{"port": 80', /line 1 column \d+/],
      ['[1]', /top level must be a JSON object/],
    ];
    for (const [text, want] of cases) {
      const f = path.join(dir, 'bad.json');
      fs.writeFileSync(f, text);
      const r = await run(['serve', '--config', f, '--port', '0', '--db', path.join(dir, 'x.db')]);
      assert.equal(r.code, 2, `${text}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, want, text);
      assert.ok(r.stderr.includes('config') || r.stderr.includes('--port'), r.stderr);
    }
  });
});

describe('logs', () => {
  test('no secret, signature or card content ever reaches the log, even at debug level', async () => {
    const s = await startServe({ args: ['--log-level', 'debug', '--log-format', 'json'] });
    const signatures = [];
    try {
      const runs = [
        [],
        ['--bad-signature'],
        ['--wrong-token'],
        ['--corrupt'],
        ['--challenge', 'c-123'],
        ['--format', 'v2', '--url', s.eventUrl],
        ['--format', 'v2', '--url', s.eventUrl, '--bad-signature'],
        ['--sign', 'legacy', '--no-encrypt'],
      ];
      for (const extra of runs) {
        const args = ['--url', s.cardUrl, '--message-id', uid('om_log'), ...extra];
        const dry = await run(['trigger', ...args, '--dry-run'], { secrets: SECRETS });
        const req = JSON.parse(dry.stdout);
        const sig = Object.entries(req.headers).find(([k]) => k.toLowerCase() === 'x-lark-signature');
        if (sig) signatures.push(sig[1]);
        await trigger(args);
      }
    } finally {
      await s.stop();
    }
    const log = s.stderr();
    assert.ok(log.length > 0, 'serve logged something');
    for (const line of log.trim().split('\n')) {
      if (!line.startsWith('{')) continue; // the shutdown notice is plain text
      const j = JSON.parse(line);
      assert.ok(j.ts && j.level && j.component && typeof j.msg === 'string', line);
    }
    assert.ok(!log.includes(SECRETS.token), 'the verification token is in the log');
    assert.ok(!log.includes(SECRETS.key), 'the encrypt key is in the log');
    for (const sig of signatures) assert.ok(!log.includes(sig), `a signature is in the log: ${sig}`);
    assert.ok(!log.includes('已完成') && !log.includes('全量发布'), 'card content is in the log');
  });
});

describe('stateless workflows', () => {
  test('bench/stateless.json answers its card from the initial state, storing nothing', async () => {
    const s = await startServe({ args: ['--workflow', path.join(SRC, 'bench', 'stateless.json')] });
    try {
      const id = uid('om_sl');
      for (let i = 0; i < 2; i++) {
        const r = await trigger(['--url', s.cardUrl, '--message-id', id]);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.body.elements[0].text.content, '已完成');
      }
      const list = await run(['cards', 'list', '--db', s.db, '--json']);
      assert.equal(list.code, 0, list.stderr);
      assert.deepEqual(JSON.parse(list.stdout), []);
    } finally {
      await s.stop();
    }
  });
});
