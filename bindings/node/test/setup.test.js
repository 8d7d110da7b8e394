'use strict';
// `queue-xec-master --setup` and `queue-xec-worker --setup`, run as users run them.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { tmpdir, MASTER_PKG, WORKER_PKG } = require('./helpers');

const MASTER_BIN = path.join(MASTER_PKG, 'bin', 'queue-xec-master.js');
const WORKER_BIN = path.join(WORKER_PKG, 'bin', 'queue-xec-worker.js');

function cli(bin, args, cwd, env = {}) {
  const clean = { ...process.env, ...env };
  if (!('token' in env)) delete clean.token;
  if (!('transferEncryptToken' in env)) delete clean.transferEncryptToken;
  // stdin is not a terminal here: the setup must never prompt.
  return spawnSync(process.execPath, [bin, ...args], { cwd, env: clean, encoding: 'utf8', input: '', timeout: 20000 });
}

// Read back with the core's parser, as every front end reads .env.
function readEnv(dir) {
  const native = require('../lib/native');
  return Object.fromEntries(native.readDotenv(path.join(dir, '.env')).map(({ key, value }) => [key, value]));
}

test('queue-xec-master --setup writes .env with two 32-character tokens', (t) => {
  const cwd = tmpdir(t);
  fs.writeFileSync(path.join(cwd, '.env'), 'OTHER=kept\n');
  const r = cli(MASTER_BIN, ['--setup'], cwd);
  assert.equal(r.status, 0, r.stderr);
  const env = readEnv(cwd);
  assert.match(env.token, /^[A-Za-z0-9]{32}$/);
  assert.match(env.transferEncryptToken, /^[A-Za-z0-9]{32}$/);
  assert.equal(env.OTHER, 'kept', 'other settings in .env are kept');
  assert.match(r.stdout, new RegExp(env.token), 'the tokens to give the workers are shown');
  // Without a terminal, existing tokens are not replaced unless asked.
  const again = cli(MASTER_BIN, ['--setup'], cwd);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /--force/);
  assert.equal(readEnv(cwd).token, env.token);
  const forced = cli(MASTER_BIN, ['--setup', '--force'], cwd);
  assert.equal(forced.status, 0, forced.stderr);
  assert.notEqual(readEnv(cwd).token, env.token);
});

test('queue-xec-master --setup applies the core token rule to tokens it is given', (t) => {
  const cwd = tmpdir(t);
  const r = cli(MASTER_BIN, ['--setup', '--transfer-encrypt-token', 'short'], cwd);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /at least 32 characters, but the one given has 5/);
  assert.ok(!fs.existsSync(path.join(cwd, '.env')));
});

test('queue-xec-worker --setup takes the master tokens from flags (never prompting without a terminal)', (t) => {
  const cwd = tmpdir(t);
  const missing = cli(WORKER_BIN, ['--setup'], cwd);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /--token/);
  const token = 'T'.repeat(24);
  const transfer = 'k'.repeat(32);
  const r = cli(WORKER_BIN, ['--setup', '--token', token, `--transfer-encrypt-token=${transfer}`], cwd);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readEnv(cwd), { token, transferEncryptToken: transfer });
  const fromEnv = tmpdir(t);
  const r2 = cli(WORKER_BIN, ['--setup'], fromEnv, { token, transferEncryptToken: transfer });
  assert.equal(r2.status, 0, r2.stderr);
  assert.equal(readEnv(fromEnv).token, token);
});

test('without --setup the commands print their usage', (t) => {
  const r = cli(MASTER_BIN, ['--help'], tmpdir(t));
  assert.equal(r.status, 0);
  assert.match(r.stdout, /queue-xec-master --setup/);
});

test('on a terminal, queue-xec-worker --setup asks for the two tokens, as worker.js --setup did, and rejects short ones', async (t) => {
  const { PassThrough } = require('node:stream');
  const { runSetup, parseArgs } = require('queuexec-native/lib/setup');
  const cwd = tmpdir(t);
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  let shown = '';
  stdout.on('data', (d) => {
    shown += d;
  });
  const transfer = 'k'.repeat(32);
  const token = 'T'.repeat(20);
  // A short transfer token first: asked again.
  stdin.write(`short\n${transfer}\n${token}\n`);
  const code = await runSetup('worker', parseArgs(['--setup']), { stdin, stdout, stderr: new PassThrough(), cwd, env: {}, isTTY: true });
  assert.equal(code, 0, shown);
  assert.match(shown, /Enter Transfer Encrypt Token: .*at least 32 characters.*Enter Transfer Encrypt Token: Enter Master token: /s);
  assert.deepEqual(readEnv(cwd), { token, transferEncryptToken: transfer });
  assert.match(shown, /Settings stored in/);
});

test('npx queue-xec-worker without a token says how to make one and exits non-zero', (t) => {
  const r = cli(WORKER_BIN, [], tmpdir(t));
  assert.equal(r.status, 1);
  // The core's token message, then the bin's own way to store the tokens.
  assert.match(r.stderr, /no room token: .*\.env.*npx queue-xec-worker --setup/s);
});
