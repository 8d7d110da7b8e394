'use strict';
// queue-xec users' code, unchanged, on the first try: dependencies installed in an app whose
// node_modules/ already exists, the task contract (payload as pushed, result shape), a task
// that cannot load, the default task.js, and the commands. Real processes on loopback.

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { tmpdir, testEnv, run, FIXTURES, MASTER_PKG, WORKER_PKG } = require('./helpers');

const MASTER = path.join(FIXTURES, 'master.js');
const WORKER = path.join(FIXTURES, 'worker.js');
const MASTER_BIN = path.join(MASTER_PKG, 'bin', 'queue-xec-master.js');
const WORKER_BIN = path.join(WORKER_PKG, 'bin', 'queue-xec-worker.js');

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function results(proc) {
  return proc.lines.filter((l) => l.result).map((l) => l.result);
}

/**
 * A package tarball like moment's: its entry point is named by package.json "main"
 * (lib/main.js) and there is no index.js, so a stale "not found" for its package.json cannot
 * be papered over by Node's index.js fallback.
 */
function packDependency(t, name) {
  const dir = tmpdir(t, 'qx-dep-src-');
  fs.mkdirSync(path.join(dir, 'lib'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', main: 'lib/main.js' }));
  fs.writeFileSync(path.join(dir, 'lib', 'main.js'), 'module.exports = (n) => ({ doubled: n * 2 });\n');
  const dest = tmpdir(t, 'qx-dep-tgz-');
  execFileSync(npm, ['pack', '--pack-destination', dest], { cwd: dir, stdio: 'ignore' });
  return path.join(dest, `${name}-1.0.0.tgz`);
}

/** A worker folder as a real app has it: package.json and an existing node_modules/. */
function appFolder(t) {
  const dir = tmpdir(t, 'qx-app-');
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'worker-app', version: '1.0.0', private: true }));
  fs.mkdirSync(path.join(dir, 'node_modules', 'already-here'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'node_modules', 'already-here', 'package.json'), JSON.stringify({ name: 'already-here', version: '1.0.0' }));
  return dir;
}

test('first run in an app whose node_modules/ exists: a dependency without index.js is installed and every job succeeds', { timeout: 180000 }, async (t) => {
  const env = testEnv(t);
  const tarball = packDependency(t, 'qx-main-only');
  const masterDir = tmpdir(t, 'qx-master-');
  fs.mkdirSync(path.join(masterDir, 'src'));
  fs.writeFileSync(
    path.join(masterDir, 'src', 'task.js'),
    `const double = require('qx-main-only');
     class Task { async run(job) { return double(JSON.parse(job.data).n); } }
     module.exports = Task;`,
  );
  const workerDir = appFolder(t);
  const worker = run(t, WORKER, { cwd: workerDir, env: { ...env, QX_NAME: 'first-run' } });
  const master = run(t, MASTER, {
    cwd: masterDir,
    env: { ...env, QX_JOBS: '50', QX_WORKERS: '1', QX_TASK: '/src/task.js', QX_DEPS: JSON.stringify([`qx-main-only@file:${tarball}`]) },
  });
  await master.next((l) => l.closed, 150000);
  const got = results(master);
  assert.equal(got.length, 50);
  assert.deepEqual(got.filter((r) => r.error), [], 'no job failed on the first run');
  for (const r of got) assert.equal(r.data.doubled, r.jobID * 2);
  assert.ok(fs.existsSync(path.join(workerDir, 'node_modules', 'qx-main-only', 'lib', 'main.js')), 'installed into the app');
  assert.deepEqual(worker.lines.filter((l) => l.error), [], 'the worker reported no error');
  worker.child.kill('SIGTERM');
});

test('a dependency already on disk is not installed again; yarn.lock picks yarn, as queue-xec did', async (t) => {
  const { installDependencies, packageManager, installedOnDisk, packageName } = require('queuexec-native/lib/task-host');
  const app = appFolder(t);
  const nested = path.join(app, 'workplace');
  fs.mkdirSync(nested);
  assert.equal(installedOnDisk('already-here', nested), true, 'found in a folder above the task');
  assert.equal(installedOnDisk('not-here', nested), false);
  assert.equal(packageName('big.js@6.2.1'), 'big.js');
  assert.equal(packageName('@scope/pkg@^1'), '@scope/pkg');
  assert.equal(packageName('dep@file:../dep.tgz'), 'dep');
  const logged = [];
  const log = { info: (m) => logged.push(m), debug() {} };
  // Nothing to install: no package manager runs (none would be found on this PATH).
  const savedPath = process.env.PATH;
  process.env.PATH = '';
  t.after(() => {
    process.env.PATH = savedPath;
  });
  await installDependencies(['already-here@^1'], nested, app, log);
  assert.deepEqual(logged, []);
  assert.equal(packageManager(app).name, 'npm');
  fs.writeFileSync(path.join(app, 'yarn.lock'), '');
  assert.equal(packageManager(app).name, 'yarn');
  await assert.rejects(installDependencies(['not-here'], nested, app, log), (e) => /yarn add not-here failed/.test(e.message) && /not installed/.test(e.message));
});

test('a task that cannot load: the worker says so, the master names it, no job runs or uses an attempt, and every job runs once the master fixes the task', { timeout: 120000 }, async (t) => {
  const env = testEnv(t);
  const cwd = tmpdir(t, 'qx-master-');
  fs.mkdirSync(path.join(cwd, 'src'));
  const taskPath = path.join(cwd, 'src', 'task.js');
  fs.writeFileSync(taskPath, "require('qx-never-announced');\nclass Task { async run() { return 'broken'; } }\nmodule.exports = Task;\n");
  const script = path.join(cwd, 'fix.js');
  fs.writeFileSync(
    script,
    `const Master = require(${JSON.stringify(require.resolve('queue-xec-master'))});
     const fs = require('fs');
     const out = (o) => console.log(JSON.stringify(o));
     const mm = new Master({ watchAssets: false, onResults: (r) => { out({ result: r }); } });
     let left = 0;
     let failures = 0;
     mm.on('workerLeft', () => { left += 1; });
     mm.on('error', async (e) => {
       failures += 1;
       if (failures !== 1) return out({ laterError: e.message });
       const stats = await mm.stats();
       // Still connected, holding nothing: the jobs went back unrun. Then the task is fixed.
       await new Promise((r) => setTimeout(r, 500));
       const later = await mm.stats();
       fs.writeFileSync(${JSON.stringify(taskPath)}, 'class Task { async run(job) { return { ok: job.id }; } }\\nmodule.exports = Task;\\n');
       out({ loadError: { message: e.message, code: e.code, worker: e.worker }, stats, later, left, changed: await mm.reloadAssets() });
     });
     mm.on('workerJoined', (w) => out({ joined: w.name }));
     mm.ready.then(() => mm.pushNewJobs(Array.from({ length: 20 }, (_, i) => ({ id: i, data: String(i) })))).then(() => out({ pushed: true }));
     mm.on('drained', () => mm.close().then(() => out({ closed: true, left })));`,
  );
  const master = run(t, script, { cwd, env });
  await master.next((l) => l.pushed);
  // concurrency 2 + batchSize 4: six jobs held at once.
  const worker = run(t, WORKER, { cwd: tmpdir(t, 'qx-worker-'), env: { ...env, QX_NAME: 'retrier', QX_CONCURRENCY: '2', getBatch: 'true', batchSize: '4' } });
  const reported = await worker.next((l) => l.error, 30000);
  assert.equal(reported.error.code, 'ERR_QUEUEXEC_TASK_LOAD');
  assert.match(reported.error.message, /qx-never-announced/);
  assert.match(reported.error.message, /execAssets\.dependencies/, 'it says how to fix it');
  const failed = await master.next((l) => l.loadError, 30000);
  assert.equal(failed.loadError.code, 'ERR_QUEUEXEC_TASK_LOAD');
  assert.equal(failed.loadError.worker.name, 'retrier');
  assert.match(failed.loadError.message, /worker retrier \(12D3Koo\w+\) cannot load the task/);
  assert.match(failed.loadError.message, /qx-never-announced/, 'the master hears why');
  assert.equal(failed.changed, true);
  for (const stats of [failed.stats, failed.later]) {
    assert.equal(stats.done, 0, 'no job ran while the task could not load');
    assert.equal(stats.retried, 0, `giving the jobs back cost no attempts: ${JSON.stringify(stats)}`);
    assert.equal(stats.running, 0, `the worker holds no job: ${JSON.stringify(stats)}`);
    assert.equal(stats.queued, 20, `every job is back in the queue: ${JSON.stringify(stats)}`);
    assert.equal(stats.workers, 1, 'the worker stayed connected');
  }
  assert.equal(failed.left, 0, 'the worker did not leave');
  const closed = await master.next((l) => l.closed, 60000);
  assert.equal(closed.left, 0, 'the worker never left');
  const got = results(master);
  assert.deepEqual(got.filter((r) => r.error), [], 'no job lost its last attempt');
  assert.deepEqual(got.map((r) => r.jobID).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
  assert.ok(got.every((r) => r.data.ok === r.jobID && r.worker.name === 'retrier'));
  assert.equal(worker.lines.filter((l) => l.error).length, 1, 'the failure was reported once');
  assert.deepEqual(master.lines.filter((l) => l.laterError), [], 'the master reported it once');
  worker.child.kill('SIGTERM');
});

test('a numeric id pushed twice runs twice, as in queue-xec, and both results carry it as the number', { timeout: 120000 }, async (t) => {
  const env = testEnv(t);
  const cwd = tmpdir(t);
  fs.mkdirSync(path.join(cwd, 'src'));
  fs.writeFileSync(path.join(cwd, 'src', 'task.js'), 'class Task { async run(job) { return job.data; } }\nmodule.exports = Task;\n');
  const script = path.join(cwd, 'twice.js');
  fs.writeFileSync(
    script,
    `const Master = require(${JSON.stringify(require.resolve('queue-xec-master'))});
     const got = [];
     const mm = new Master({ onResults: (r) => { got.push(r); if (got.length === 2) { console.log(JSON.stringify({ got })); mm.close(); } } });
     mm.once('workerJoined', async () => {
       const receipts = [await mm.pushNewJob({ id: 7, data: 'first' }), await mm.pushNewJob({ id: 7, data: 'second' })];
       console.log(JSON.stringify({ receipts }));
     });`,
  );
  run(t, WORKER, { cwd: tmpdir(t), env: { ...env, QX_NAME: 'twice' } });
  const master = run(t, script, { cwd, env });
  const { receipts } = await master.next((l) => l.receipts, 60000);
  assert.deepEqual(receipts.map((r) => r.repeated), [false, true]);
  const { got } = await master.next((l) => l.got, 60000);
  assert.deepEqual(got.map((r) => r.data).sort(), ['first', 'second'], 'both jobs ran');
  assert.deepEqual(got.map((r) => r.jobID), [7, 7], 'each result carries the id as pushed, a number');
});

test('the task gets every kind of payload as pushed and the result is {jobID, worker: {id, name}, data}', { timeout: 120000 }, async (t) => {
  const env = testEnv(t);
  const cwd = tmpdir(t);
  fs.mkdirSync(path.join(cwd, 'src'));
  // The default task.js: execAssets names none, so <cwd>/src/task.js is shipped.
  fs.writeFileSync(
    path.join(cwd, 'src', 'task.js'),
    `class Task { async run(job, ctx) { return { job, ctx: { id: ctx.id, attempt: ctx.attempt, signal: ctx.signal instanceof AbortSignal } }; } }
     module.exports = Task;`,
  );
  const payloads = [
    { id: 1, data: JSON.stringify({ x: 1 }) },
    { id: 'b', data: { nested: true } },
    { id: 2.5, data: [1, 'two'] },
    { id: 'extra', data: 'd', more: 1 },
    { id: 3, data: 'x', more: { deep: [1] } },
    { data: 'no id' },
    { data: 'x', id: 'order' },
    [1, 2, 3],
    'plain text',
    '{"id":"looks","data":"like json"}',
    42,
    { id: 'undefined-away', data: 1, gone: undefined },
  ];
  const script = path.join(cwd, 'kinds.js');
  fs.writeFileSync(
    script,
    `const Master = require(${JSON.stringify(require.resolve('queue-xec-master'))});
     const payloads = ${JSON.stringify(payloads)};
     payloads[payloads.length - 1].gone = undefined; // JSON drops it on the way, as in queue-xec
     const got = [];
     const mm = new Master({ onResults: (r) => { got.push(r); if (got.length === payloads.length) { console.log(JSON.stringify({ got, types: got.map((r) => typeof r.jobID), keys: got.map((r) => Object.keys(r)) })); mm.close(); } } });
     // Once: a repeated id is queued again, so a second join must not push the payloads again.
     mm.once('workerJoined', () => Promise.all(payloads.map((p) => mm.pushNewJob(p))));`,
  );
  const worker = run(t, WORKER, { cwd: tmpdir(t), env: { ...env, QX_NAME: 'contract' } });
  const ready = await worker.next((l) => l.ready);
  const master = run(t, script, { cwd, env });
  const { got, types, keys } = await master.next((l) => l.got, 60000);
  assert.equal(got.length, payloads.length);
  const roundTrip = (p) => JSON.parse(JSON.stringify(p));
  for (const p of payloads) {
    const match = got.find((r) => JSON.stringify(r.data.job) === JSON.stringify(roundTrip(p)));
    assert.ok(match, `the task received ${JSON.stringify(p)} as pushed; got ${got.map((r) => JSON.stringify(r.data.job)).join(' | ')}`);
    const expectedId = p !== null && typeof p === 'object' && !Array.isArray(p) ? p.id : undefined;
    assert.equal(match.jobID, expectedId, `jobID of ${JSON.stringify(p)}`);
    assert.deepEqual(match.worker, { id: ready.id, name: 'contract' });
    assert.equal(match.data.ctx.attempt, 1);
    assert.equal(match.data.ctx.signal, true);
    assert.equal(typeof match.data.ctx.id, 'string');
  }
  const byJob = (pred) => got.findIndex((r) => pred(r.data.job));
  assert.equal(types[byJob((j) => j && j.id === 1)], 'number', 'a numeric id comes back as a number');
  assert.equal(typeof got[byJob((j) => j && j.id === 1)].data.job.id, 'number', 'and reaches the task as one');
  assert.deepEqual(keys[byJob((j) => j === 42)], ['worker', 'data'], 'no jobID for a payload without an id, as in queue-xec');
  assert.deepEqual(keys[byJob((j) => j && j.id === 'b')], ['jobID', 'worker', 'data']);
  worker.child.kill('SIGTERM');
});

test('long strings cross to the task exactly: quotes, backslashes, control characters, non-ASCII and emoji, a lone surrogate', { timeout: 120000 }, async (t) => {
  // Strings of STRING_DATA_MIN characters or more cross the addon as they are and the core makes
  // the JSON string; what the task receives must be what JSON.stringify would have carried.
  const { encodePayload, STRING_DATA_MIN } = require('queuexec-native/lib/payload');
  const base = `q"b\\s/${Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join('')}\x7f é ü ÿ 中文 😀 \u2028\u2029 {"id":1}`;
  const long = (tag) => (tag + base).repeat(Math.ceil(STRING_DATA_MIN / base.length) + 1);
  assert.equal(encodePayload({ id: 'a', data: long('a') }).stringData, true, 'a long string is sent as string data');
  assert.equal(encodePayload(long('w')).stringData, true, 'a long string payload too');
  assert.equal(encodePayload({ id: 'a', data: `${long('l')}\ud800` }).stringData, undefined, 'a lone surrogate is stringified here');
  assert.equal(encodePayload({ id: 'a', data: 'short' }).stringData, undefined, 'a short string is stringified here');

  const env = testEnv(t);
  const cwd = tmpdir(t);
  fs.mkdirSync(path.join(cwd, 'src'));
  // A result is checked as strict JSON, where a lone surrogate has no place: for that job the
  // task returns what it saw instead of echoing it.
  fs.writeFileSync(
    path.join(cwd, 'src', 'task.js'),
    "class Task { async run(job) { return job && job.id === 'lone' ? { length: job.data.length, last: job.data.charCodeAt(job.data.length - 1) } : { job }; } }\nmodule.exports = Task;\n",
  );
  const script = path.join(cwd, 'strings.js');
  fs.writeFileSync(
    script,
    `const Master = require(${JSON.stringify(require.resolve('queue-xec-master'))});
     const base = ${JSON.stringify(base)};
     const long = ${long.toString().replace('STRING_DATA_MIN', String(STRING_DATA_MIN))};
     const payloads = [{ id: 'str', data: long('a') }, { id: 9, data: long('b') }, long('c'), { id: 'lone', data: long('d') + '\\ud800' }, { id: 'short', data: 'q"\\\\' }, { x: long('e') }];
     const got = [];
     const total = payloads.length + 1;
     const mm = new Master({ onResults: (r) => { got.push(r); if (got.length === total) { console.log(JSON.stringify({ got, payloads, byOption: long('f') })); mm.close(); } } });
     mm.once('workerJoined', () => Promise.all([...payloads.map((p) => mm.pushNewJob(p)), mm.pushNewJob(long('f'), { id: 'by-option' })]));`,
  );
  const worker = run(t, WORKER, { cwd: tmpdir(t), env: { ...env, QX_NAME: 'strings' } });
  await worker.next((l) => l.ready);
  const master = run(t, script, { cwd, env });
  const { got, payloads, byOption } = await master.next((l) => l.got, 60000);
  assert.equal(got.length, payloads.length + 1);
  for (const p of payloads.filter((q) => q.id !== 'lone')) {
    const match = got.find((r) => r.data && JSON.stringify(r.data.job) === JSON.stringify(p));
    const failed = got.filter((r) => !r.data).map((r) => JSON.stringify(r).slice(0, 300));
    assert.ok(match, `the task received ${JSON.stringify(p).slice(0, 80)}… as pushed; results without data: ${failed.join(' | ')}`);
  }
  const lone = payloads.find((q) => q.id === 'lone');
  assert.deepEqual(got.find((r) => r.jobID === 'lone').data, { length: lone.data.length, last: 0xd800 }, 'the lone surrogate arrived as one');
  assert.equal(got.find((r) => r.jobID === 'by-option').data.job, byOption, 'a long string pushed with an id option arrives whole');
  worker.child.kill('SIGTERM');
});

test('a sandboxed worker (the embedded runtime, as the CLI and Python run task.js) gives the task the same payloads as a Node worker: the shape travels with the job', { timeout: 120000 }, async (t) => {
  const env = testEnv(t);
  const cwd = tmpdir(t);
  fs.mkdirSync(path.join(cwd, 'src'));
  fs.writeFileSync(
    path.join(cwd, 'src', 'task.js'),
    'class Task { async run(job) { return { job, idType: job && typeof job.id }; } }\nmodule.exports = Task;\n',
  );
  // A numeric id, extra keys, no id, not an object, and data that ends in whitespace (the marks
  // this replaced were whitespace after the JSON text).
  const payloads = [{ id: 7, data: JSON.stringify({ x: 1 }) }, { id: 'e', data: 1, more: 2 }, { data: 'no id' }, [1, 'two'], 5, { id: 8, data: 'tab\t' }, { id: 's', data: 'x\t\t' }];
  const script = path.join(cwd, 'sandboxed.js');
  fs.writeFileSync(
    script,
    `const Master = require(${JSON.stringify(require.resolve('queue-xec-master'))});
     const payloads = ${JSON.stringify(payloads)};
     const got = [];
     const mm = new Master({ onResults: (r) => { got.push(r); if (got.length === payloads.length) { console.log(JSON.stringify({ got })); mm.close(); } } });
     mm.once('workerJoined', () => Promise.all(payloads.map((p) => mm.pushNewJob(p))));`,
  );
  const worker = run(t, WORKER, { cwd: tmpdir(t), env: { ...env, QX_NAME: 'sandboxed', QX_SANDBOX: '1' } });
  const master = run(t, script, { cwd, env });
  const { got } = await master.next((l) => l.got, 60000);
  for (const p of payloads) {
    const match = got.find((r) => JSON.stringify(r.data.job) === JSON.stringify(p));
    assert.ok(match, `the sandboxed task received ${JSON.stringify(p)} as pushed; got ${got.map((r) => JSON.stringify(r.data.job)).join(' | ')}`);
    assert.equal(match.worker.name, 'sandboxed');
  }
  const seven = got.find((r) => r.jobID === 7);
  assert.equal(seven.data.idType, 'number', 'a numeric id reaches the sandboxed task as a number');
  assert.deepEqual(seven.data.job, { id: 7, data: '{"x":1}' }, "queue-xec's {id, data}: job.data is the JSON string the master was given");
  assert.equal(got.find((r) => r.jobID === 8).data.job.data, 'tab\t', 'data ending in a tab is data');
  worker.child.kill('SIGTERM');
});

test('npx queue-xec-worker runs a worker from .env; npx queue-xec-master runs a master from queue-xec.config.js', { timeout: 120000 }, async (t) => {
  const env = testEnv(t);
  const { token, transferEncryptToken } = env;
  delete env.token;
  delete env.transferEncryptToken;
  const masterDir = tmpdir(t, 'qx-master-');
  const workerDir = tmpdir(t, 'qx-worker-');
  for (const dir of [masterDir, workerDir]) fs.writeFileSync(path.join(dir, '.env'), `token=${token}\ntransferEncryptToken=${transferEncryptToken}\n`);
  fs.mkdirSync(path.join(masterDir, 'src'));
  fs.writeFileSync(path.join(masterDir, 'src', 'task.js'), 'class Task { async run(job) { return { sum: job.x + job.y }; } }\nmodule.exports = Task;\n');
  fs.writeFileSync(
    path.join(masterDir, 'queue-xec.config.js'),
    'module.exports = { jobs: () => [{ id: 1, x: 1, y: 2 }, { id: 2, x: 3, y: 4 }] };\n',
  );
  const worker = run(t, WORKER_BIN, { cwd: workerDir, env });
  const master = run(t, MASTER_BIN, { cwd: masterDir, env, args: ['--exit-when-drained'] });
  const { code } = await Promise.race([master.exited, new Promise((r) => setTimeout(() => r({ code: 'timed out' }), 90000))]);
  assert.equal(code, 0, `the master exits once drained; stderr: ${master.stderr()}`);
  const got = master.lines.filter((l) => l.jobID !== undefined);
  assert.deepEqual(got.map((r) => [r.jobID, r.data.sum]).sort(), [[1, 3], [2, 7]]);
  assert.equal(got[0].worker.name, 'no_name');
  worker.child.kill('SIGTERM');
  const stopped = await worker.exited;
  assert.equal(stopped.code, 0, `the worker closes cleanly on SIGTERM; stderr: ${worker.stderr()}`);
});

test('a module task.js requires but nobody announced: the error names it and, once it is on disk, says a restart is needed', async (t) => {
  const { TaskHost } = require('queuexec-native/lib/task-host');
  const app = appFolder(t);
  fs.mkdirSync(path.join(app, 'workplace'));
  fs.writeFileSync(path.join(app, 'workplace', 'task.js'), "const dep = require('qx-late');\nclass Task { async run() { return dep; } }\nmodule.exports = Task;\n");
  const host = new TaskHost({ info() {}, debug() {}, warn() {} });
  // The shape the addon hands over: the core names the task's entry (taskEntry).
  const info = { workplace: app, files: [{ name: 'task.js', workerPath: 'workplace/task.js' }], dependencies: [], bundle: 'b'.repeat(64), taskEntry: 'workplace/task.js' };
  const first = await host.load(info);
  assert.match(first.error, /Cannot find module 'qx-late'.*add "qx-late" to the master's execAssets\.dependencies/s);
  assert.deepEqual(await host.run({ id: '1', data: '1', attempt: 1 }), { error: first.error }, 'no task, no job');
  // Installed by hand after the miss, without index.js: this process cannot see it any more.
  fs.mkdirSync(path.join(app, 'node_modules', 'qx-late', 'lib'), { recursive: true });
  fs.writeFileSync(path.join(app, 'node_modules', 'qx-late', 'package.json'), JSON.stringify({ name: 'qx-late', main: 'lib/main.js' }));
  fs.writeFileSync(path.join(app, 'node_modules', 'qx-late', 'lib', 'main.js'), 'module.exports = 1;\n');
  const second = await host.load(info);
  assert.match(second.error, /installed now.*restart the worker/s);
});
