'use strict';
// The queue-xec API as users call it, in one process: constructors, tokens, pushNewJob.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { tmpdir, testEnv, run, tokens, FIXTURES } = require('./helpers');
const Master = require('queue-xec-master');
const Worker = require('queue-xec-worker');

function isolated(t) {
  const env = testEnv(t);
  const saved = { ...process.env };
  process.env.QUEUEXEC_ROOM_DIR = env.QUEUEXEC_ROOM_DIR;
  process.env.QUEUEXEC_MDNS = '0';
  delete process.env.token;
  delete process.env.transferEncryptToken;
  t.after(() => {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  });
  return env;
}

test('a missing token or a short transferEncryptToken is refused at once, with a clear error', (t) => {
  isolated(t);
  const { transferEncryptToken } = tokens();
  assert.throws(() => new Master({ transferEncryptToken }), (e) => e instanceof Master.errors.TokenError && /no room token/.test(e.message));
  assert.throws(
    () => new Master({ token: 'room', transferEncryptToken: 'x'.repeat(31) }),
    (e) => e instanceof Master.errors.TokenError && e.code === 'ERR_QUEUEXEC_TOKEN' && /at least 32 characters/.test(e.message) && /31/.test(e.message),
  );
  assert.throws(() => new Worker({ token: 'room', transferEncryptToken: 'short' }), (e) => e.code === 'ERR_QUEUEXEC_TOKEN');
  assert.throws(() => new Worker({ token: 'room' }), /no transfer token/);
});

test('any non-empty room token is accepted, as queue-xec accepts it', async (t) => {
  isolated(t);
  const mm = new Master({ token: 'a', transferEncryptToken: tokens().transferEncryptToken, watchAssets: false });
  t.after(() => mm.close());
  await mm.ready;
  assert.match(mm.peerId, /^12D3/);
});

test('tokens come from the environment when the constructor gives none', async (t) => {
  isolated(t);
  Object.assign(process.env, tokens());
  const mm = new Master({ watchAssets: false });
  t.after(() => mm.close());
  await mm.ready;
  assert.equal(mm.token, process.env.token);
});

test('tokens and LOG_LEVEL come from ./.env, loaded by the core parser, and the environment wins over it', async (t) => {
  const env = testEnv(t);
  const cwd = tmpdir(t);
  const fromFile = tokens();
  fs.writeFileSync(path.join(cwd, '.env'), `# tokens\ntoken=${fromFile.token}\ntransferEncryptToken="${fromFile.transferEncryptToken}"\nLOG_LEVEL=error\n`);
  const script = path.join(cwd, 'probe.js');
  fs.writeFileSync(
    script,
    `const Master = require(${JSON.stringify(require.resolve('queue-xec-master'))});
     const mm = new Master({ watchAssets: false });
     mm.ready.then(() => { console.log(JSON.stringify({ token: mm.token, level: mm.log.level })); return mm.close(); });`,
  );
  delete env.token;
  delete env.transferEncryptToken;
  const probe = run(t, script, { cwd, env });
  const line = await probe.next((l) => l.token);
  assert.equal(line.token, fromFile.token);
  assert.equal(line.level, 'error', 'LOG_LEVEL from .env');
  const overridden = run(t, script, { cwd, env: { ...env, token: 'from-the-environment' } });
  assert.equal((await overridden.next((l) => l.token)).token, 'from-the-environment');
});

test('pushNewJob rejects `payload is undefined` and accepts objects, arrays, strings and numbers', async (t) => {
  isolated(t);
  const mm = new Master({ ...tokens(), watchAssets: false });
  t.after(() => mm.close());
  await assert.rejects(mm.pushNewJob(), { message: 'payload is undefined' });
  const receipts = await Promise.all([
    mm.pushNewJob({ id: 7, data: JSON.stringify({ x: 1 }) }),
    mm.pushNewJob([1, 2, 3]),
    mm.pushNewJob('plain text'),
    mm.pushNewJob('{"id":"from-json","data":"{}"}'),
    mm.pushNewJob(42),
    mm.pushNewJob({ data: 'no id' }),
  ]);
  assert.equal(receipts[0].id, '7');
  assert.notEqual(receipts[3].id, 'from-json', 'a string payload travels as the string: its text is not parsed for an id');
  assert.equal(new Set(receipts.map((r) => r.id)).size, 6, 'every push got its own id');
  assert.ok(receipts.every((r) => r.duplicate === false && r.repeated === false));
  const stats = await mm.stats();
  assert.equal(stats.queued, 6);
  assert.equal(stats.workers, 0);
  await assert.rejects(mm.pushNewJob({ id: 'big', data: 1n }), (e) => e.code === 'ERR_QUEUEXEC_PAYLOAD');
  await assert.rejects(mm.pushNewJob({ id: 'x' }, { priority: 'high' }), (e) => e.code === 'ERR_QUEUEXEC_CONFIG');
});

test('a repeated id is queued again, as in queue-xec: the receipt says repeated and a warning shows at the default log level', async (t) => {
  isolated(t);
  delete process.env.LOG_LEVEL;
  const mm = new Master({ ...tokens(), watchAssets: false });
  t.after(() => mm.close());
  const logged = [];
  mm.log.stream = { write: (line) => logged.push(line) };
  const warned = new Promise((resolve) => mm.once('warning', resolve));
  const first = await mm.pushNewJob({ id: 7, data: 'first' });
  const again = await mm.pushNewJob({ id: 7, data: 'again' });
  assert.deepEqual(first, { id: '7', duplicate: false, repeated: false });
  assert.deepEqual(again, { id: '7', duplicate: false, repeated: true });
  assert.equal((await mm.stats()).queued, 2, 'both jobs are queued');
  const message = await warned;
  assert.match(message, /queued again/);
  assert.match(message, /"7"/);
  assert.ok(
    logged.some((line) => /\[WARN\] > .*queued again/.test(line)),
    `the warning is in the log at the default level:\n${logged.join('')}`,
  );
});

test('with idempotentIds a repeated id is not queued again: the receipt says duplicate', async (t) => {
  isolated(t);
  const mm = new Master({ ...tokens(), watchAssets: false, idempotentIds: true });
  t.after(() => mm.close());
  const warned = new Promise((resolve) => mm.once('warning', resolve));
  const [first, again] = await mm.pushNewJobs([{ id: 'a' }, { id: 'a' }]);
  assert.deepEqual(first, { id: 'a', duplicate: false, repeated: false });
  assert.equal(again.duplicate, true);
  assert.equal((await mm.stats()).queued, 1, 'the repeated id was not queued');
  assert.match(await warned, /not queued again/);
});

test('pushNewJobs queues an array at once; per-job options are accepted', async (t) => {
  isolated(t);
  const mm = new Master({ ...tokens(), watchAssets: false });
  t.after(() => mm.close());
  const receipts = await mm.pushNewJobs(
    Array.from({ length: 1000 }, (_, i) => ({ id: `j${i}`, data: String(i) })),
    { priority: 3, retries: 1, timeout: 5000, delay: 60000 },
  );
  assert.equal(receipts.length, 1000);
  const stats = await mm.stats();
  assert.equal(stats.delayed, 1000, 'the delay option holds the jobs back');
  await assert.rejects(mm.pushNewJobs([1, undefined]), /payload 1 is undefined/);
  await assert.rejects(mm.pushNewJobs('nope'), /array/);
});

test('two task.js files are refused; a missing asset file is skipped with a warning, a missing src/task.js with a notice', (t) => {
  isolated(t);
  const files = [
    { masterPath: '/a.js', name: 'task.js', workerPath: '/w/a.js' },
    { masterPath: '/b.js', name: 'task.js', workerPath: '/w/b.js' },
  ];
  assert.throws(() => new Master({ ...tokens(), execAssets: { files } }), /only one file with name task.js/);
  const { resolveAssets } = require('queuexec-native/lib/master');
  const warnings = [];
  const notices = [];
  const cwd = tmpdir(t);
  const before = process.cwd();
  process.chdir(cwd);
  t.after(() => process.chdir(before));
  const log = { warn: (...a) => warnings.push(a.join(' ')), notice: (...a) => notices.push(a.join(' ')), debug() {} };
  const assets = resolveAssets({ files: [{ masterPath: '/does/not/exist.js', name: 'x.js', workerPath: '/workplace/x.js' }] }, log);
  assert.deepEqual(assets.files, [], 'the missing file is left out; so is src/task.js, which does not exist here');
  assert.match(warnings.join('\n'), /not found/);
  assert.match(notices.join('\n'), /name no task\.js and .*src\/task\.js does not exist/, 'said even at the default log level');
  fs.mkdirSync(path.join(cwd, 'src'));
  fs.copyFileSync(path.join(FIXTURES, 'task.js'), path.join(cwd, 'src', 'task.js'));
  const defaults = resolveAssets({ dependencies: ['big.js'] }, log);
  assert.deepEqual(defaults.files.map((f) => [f.name, f.masterPath, f.resolvedWorkerPath]), [['task.js', '/src/task.js', 'workplace/task.js']], "queue-xec's default: the app's own src/task.js");
  assert.deepEqual(defaults.dependencies, ['big.js']);
});

test('masterPath is taken relative to process.cwd(), leading slash and all, as queue-xec did', (t) => {
  isolated(t);
  const cwd = tmpdir(t);
  fs.mkdirSync(path.join(cwd, 'src'));
  fs.copyFileSync(path.join(FIXTURES, 'task.js'), path.join(cwd, 'src', 'task.js'));
  const before = process.cwd();
  process.chdir(cwd);
  t.after(() => process.chdir(before));
  const { resolveAssets } = require('queuexec-native/lib/master');
  const assets = resolveAssets({ files: [{ masterPath: '/src/task.js', name: 'task.js', workerPath: '/workplace/task.js' }] }, { warn() {}, debug() {} });
  assert.equal(fs.realpathSync(assets.files[0].resolvedMasterPath), fs.realpathSync(path.join(cwd, 'src', 'task.js')));
});

test('close() on both ends resolves and lets the process exit', async (t) => {
  const env = testEnv(t);
  const cwd = tmpdir(t);
  const script = path.join(cwd, 'close.js');
  fs.writeFileSync(
    script,
    `const Master = require(${JSON.stringify(require.resolve('queue-xec-master'))});
     const Worker = require(${JSON.stringify(require.resolve('queue-xec-worker'))});
     const mm = new Master({ watchAssets: false });
     const w = new Worker({ name: 'w' });
     mm.on('workerJoined', async () => { await w.close(); await mm.close(); await mm.close(); console.log(JSON.stringify({ closed: true })); });`,
  );
  const p = run(t, script, { cwd, env });
  await p.next((l) => l.closed, 20000);
  const { code } = await Promise.race([p.exited, new Promise((r) => setTimeout(() => r({ code: 'still running' }), 10000))]);
  assert.equal(code, 0, `the process exits by itself after close(); stderr: ${p.stderr()}`);
});

test("a worker whose transferEncryptToken differs from the master's says so with an 'error' event", { timeout: 30000 }, async (t) => {
  isolated(t);
  const room = tokens().token;
  const mm = new Master({ token: room, transferEncryptToken: 'x'.repeat(32), watchAssets: false });
  t.after(() => mm.close());
  await mm.ready;
  const w = new Worker({ token: room, transferEncryptToken: 'y'.repeat(32), name: 'wrong' });
  t.after(() => w.close());
  const error = await new Promise((resolve) => w.once('error', resolve));
  assert.ok(error instanceof Worker.errors.TokenMismatchError, String(error));
  assert.equal(error.code, 'ERR_QUEUEXEC_TOKEN_MISMATCH');
  assert.match(error.message, /transferEncryptToken differs/);
});

test('a master that cannot start rejects ready and every push with a classed error that keeps its cause', async (t) => {
  isolated(t);
  const dir = tmpdir(t);
  const mm = new Master({ ...tokens(), watchAssets: false, storePath: path.join(dir, 'missing', 'dir', 'jobs.sqlite') });
  const errors = [];
  mm.on('error', (e) => errors.push(e));
  await assert.rejects(mm.ready, (e) => {
    assert.ok(e instanceof Master.errors.StoreError, `${e.name}: ${e.message}`);
    assert.equal(e.code, 'ERR_QUEUEXEC_STORE');
    assert.match(e.message, /missing/);
    assert.ok(e.cause instanceof Error, 'the OS error is kept as the cause');
    assert.match(e.cause.message, /No such file or directory/);
    return true;
  });
  await assert.rejects(mm.pushNewJob({ id: 1 }), { code: 'ERR_QUEUEXEC_STORE' });
  assert.equal(errors.length, 1, "the failure is also an 'error' event");
  const bad = new Master({ ...tokens(), watchAssets: false, execAssets: { files: [{ masterPath: '/package.json', name: 'task.js', workerPath: '../escape.js' }] } });
  bad.on('error', () => {});
  await assert.rejects(bad.ready, (e) => e instanceof Master.errors.AssetError && /climbs out of the workplace/.test(e.message));
});

// The same cases run in bindings/python/tests/test_errors.py: one code and one class name per
// bad input, whichever language the master is started from.
test('the same bad input gives the same error code and class as in Python', { timeout: 30000 }, async (t) => {
  isolated(t);
  const dir = tmpdir(t);
  const cases = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'tests', 'fixtures', 'error-codes.json'), 'utf8'));
  assert.ok(cases.length >= 3);
  for (const c of cases) {
    const options = { ...tokens(), watchAssets: false };
    if (c.transferEncryptToken !== undefined) options.transferEncryptToken = c.transferEncryptToken;
    if (c.store !== undefined) options.storePath = path.join(dir, c.store);
    if (c.listen !== undefined) options.listen = [c.listen];
    let error = null;
    try {
      const mm = new Master(options);
      mm.on('error', () => {});
      t.after(() => mm.close());
      await mm.ready;
    } catch (e) {
      error = e;
    }
    assert.ok(error, `${c.case}: the master is refused`);
    assert.equal(error.code, c.code, `${c.case}: ${error.message}`);
    assert.equal(error.name, c.class, `${c.case}: ${error.message}`);
    assert.ok(error instanceof Master.errors[c.class], `${c.case}: an instance of ${c.class}`);
  }
});
