'use strict';
// The core's shared rules as the npm packages see them: one .env parser, one token rule, the
// core's defaults, and the shared fixture every front end must read the same way.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const native = require('../lib/native');
const { tmpdir, testEnv, run } = require('./helpers');

const FIXTURE = path.resolve(__dirname, '..', '..', '..', 'tests', 'fixtures', 'shared.env');
const EXPECTED = JSON.parse(fs.readFileSync(`${FIXTURE}.json`, 'utf8'));

test('the shared .env fixture resolves to the values every front end reads', { timeout: 10000 }, () => {
  const tokens = native.resolveTokens(undefined, undefined, FIXTURE);
  assert.deepEqual(tokens, { token: EXPECTED.token, transferEncryptToken: EXPECTED.transferEncryptToken });
  const entries = Object.fromEntries(native.readDotenv(FIXTURE).map(({ key, value }) => [key, value]));
  assert.deepEqual(entries, EXPECTED);
});

test('a Node master started beside the shared .env joins a worker given the expected tokens', { timeout: 60000 }, async (t) => {
  const env = testEnv(t);
  delete env.token;
  delete env.transferEncryptToken;
  const cwd = tmpdir(t);
  fs.copyFileSync(FIXTURE, path.join(cwd, '.env'));
  // The task queue-xec ships by default, <cwd>/src/task.js: it echoes the payload.
  fs.mkdirSync(path.join(cwd, 'src'));
  fs.writeFileSync(path.join(cwd, 'src', 'task.js'), 'class Task { async run(job) { return { echo: job }; } }\nmodule.exports = Task;\n');
  const script = path.join(cwd, 'probe.js');
  fs.writeFileSync(
    script,
    `const Master = require(${JSON.stringify(require.resolve('queue-xec-master'))});
     const Worker = require(${JSON.stringify(require.resolve('queue-xec-worker'))});
     const expected = ${JSON.stringify(EXPECTED)};
     const mm = new Master({ watchAssets: false });
     console.log(JSON.stringify({ loaded: { token: process.env.token, transferEncryptToken: process.env.transferEncryptToken, LOG_LEVEL: process.env.LOG_LEVEL }, token: mm.token }));
     mm.on('result', (r) => { console.log(JSON.stringify({ result: r.data })); Promise.all([ww.close(), mm.close()]); });
     const ww = new Worker({ token: expected.token, transferEncryptToken: expected.transferEncryptToken, workplace: 'wp' });
     mm.ready.then(() => mm.pushNewJob({ id: 'j1', data: 'hello' }));`,
  );
  const probe = run(t, script, { cwd, env });
  const first = await probe.next((l) => l.loaded);
  assert.deepEqual(first.loaded, EXPECTED, '.env loaded into process.env by the core parser');
  assert.equal(first.token, EXPECTED.token);
  const done = await probe.next((l) => l.result, 45000);
  assert.deepEqual(done.result, { echo: { id: 'j1', data: 'hello' } });
});

test('generated tokens pass the token rule; a short transfer token gets the one message', { timeout: 10000 }, () => {
  const token = native.generateToken();
  assert.match(token, /^[A-Za-z0-9]{32}$/);
  native.checkTokens(token, native.generateToken());
  assert.throws(
    () => native.checkTokens('room', 'short'),
    (e) => e.code === 'ERR_QUEUEXEC_TOKEN' && /at least 32 characters, but the one given has 5/.test(e.message),
  );
});

test('the core parser refuses an invalid .env naming its line', { timeout: 10000 }, (t) => {
  const dir = tmpdir(t);
  const file = path.join(dir, '.env');
  fs.writeFileSync(file, 'A=1\nnot an assignment\n');
  assert.throws(() => native.readDotenv(file), (e) => e.code === 'ERR_QUEUEXEC_CONFIG' && /line 2/.test(e.message));
});

test('the worker and master defaults are the core\'s', { timeout: 10000 }, () => {
  const d = native.defaults();
  assert.equal(d.concurrency, 1);
  assert.equal(d.name, 'no_name');
  assert.equal(d.prefetch, 1);
  assert.equal(d.retries, 3);
  assert.equal(d.leaseTtlMs, 15000);
  assert.equal(d.maxWorkers, 1024);
  assert.equal(d.watchAssets, true);
  assert.equal(d.taskEntry, 'task.js');
});

test('a worker concurrency of 0 is refused with the core\'s message', { timeout: 10000 }, () => {
  const { Worker } = require('..');
  assert.throws(
    () => new Worker({ token: 'room', transferEncryptToken: native.generateToken(), concurrency: 0 }),
    (e) => e.code === 'ERR_QUEUEXEC_CONFIG' && /concurrency must be at least 1/.test(e.message),
  );
});

test('a QUEUEXEC_THREADS that is not a thread count fails the master\'s start, naming the variable and the value', { timeout: 30000 }, (t) => {
  const { spawnSync } = require('node:child_process');
  // The addon reads the variable when it loads, so a process of its own.
  const script = `
    const Master = require(${JSON.stringify(path.resolve(__dirname, '..', 'packages', 'queue-xec-master'))});
    const m = new Master({ watchAssets: false });
    m.ready.then(
      () => { console.log(JSON.stringify({ started: true })); return m.close(); },
      (e) => console.log(JSON.stringify({ code: e.code, message: e.message })),
    );`;
  const out = spawnSync(process.execPath, ['-e', script], {
    cwd: tmpdir(t),
    env: testEnv(t, { QUEUEXEC_THREADS: 'two' }),
    encoding: 'utf8',
    timeout: 20000,
  });
  const line = JSON.parse(out.stdout.trim().split('\n').pop() || '{}');
  assert.equal(line.code, 'ERR_QUEUEXEC_CONFIG', out.stdout + out.stderr);
  assert.match(line.message, /QUEUEXEC_THREADS="two" is not a thread count/);
});
