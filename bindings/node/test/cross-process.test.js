'use strict';
// A master and workers as separate Node processes, on loopback, each test in its own room.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { tmpdir, testEnv, run, FIXTURES } = require('./helpers');

const MASTER = path.join(FIXTURES, 'master.js');
const WORKER = path.join(FIXTURES, 'worker.js');

/** A master's directory with the test task at ./src/task.js, and one directory per worker. */
function layout(t, workers, task = path.join(FIXTURES, 'task.js')) {
  const masterDir = tmpdir(t, 'qx-master-');
  fs.mkdirSync(path.join(masterDir, 'src'));
  fs.copyFileSync(task, path.join(masterDir, 'src', 'task.js'));
  const workerDirs = Array.from({ length: workers }, () => tmpdir(t, 'qx-worker-'));
  return { masterDir, workerDirs };
}

function startWorkers(t, env, dirs) {
  return dirs.map((cwd, i) => run(t, WORKER, { cwd, env: { ...env, QX_NAME: `worker_${i + 1}` } }));
}

function results(proc) {
  return proc.lines.filter((l) => l.result).map((l) => l.result);
}

test('500 jobs, a master and two worker processes: every result exactly once, shared by both', async (t) => {
  const env = testEnv(t);
  const { masterDir, workerDirs } = layout(t, 2);
  const workers = startWorkers(t, env, workerDirs);
  const master = run(t, MASTER, { cwd: masterDir, env: { ...env, QX_JOBS: '500', QX_WORKERS: '2', QX_TASK: '/src/task.js', QX_WAIT_DRAINED: '1' } });
  await master.next((l) => l.closed, 90000);
  const got = results(master);
  assert.equal(got.length, 500);
  const ids = got.map((r) => r.jobID);
  assert.ok(ids.every((id) => typeof id === 'number'), 'numeric ids come back as numbers, as queue-xec gave them');
  assert.deepEqual([...new Set(ids)].sort((a, b) => a - b), Array.from({ length: 500 }, (_, i) => i));
  for (const r of got) {
    assert.equal(r.error, undefined);
    assert.equal(r.data.square, r.jobID * r.jobID, 'each result belongs to its job');
    assert.match(r.worker.id, /^12D3/);
  }
  const names = new Set(got.map((r) => r.worker.name));
  assert.deepEqual([...names].sort(), ['worker_1', 'worker_2']);
  // The task was shipped to each worker's ./workplace/task.js, as queue-xec placed it.
  for (const dir of workerDirs) assert.ok(fs.existsSync(path.join(dir, 'workplace', 'task.js')));
  assert.ok(master.lines.some((l) => l.drained));
  for (const w of workers) w.child.kill('SIGTERM');
});

test('a worker killed with SIGKILL while it holds a lease mid-job loses no job', { timeout: 150000 }, async (t) => {
  const env = testEnv(t);
  const marks = tmpdir(t, 'qx-marks-');
  const { masterDir, workerDirs } = layout(t, 2, path.join(FIXTURES, 'marking-task.js'));
  const withMarks = { ...env, QX_MARK_DIR: marks };
  // worker_1 finishes 5 jobs, then hangs inside the 6th: it is killed holding that job's lease.
  const victim = run(t, WORKER, { cwd: workerDirs[0], env: { ...withMarks, QX_NAME: 'worker_1', QX_HANG_AFTER: '5' } });
  const survivor = run(t, WORKER, { cwd: workerDirs[1], env: { ...withMarks, QX_NAME: 'worker_2' } });
  const master = run(t, MASTER, {
    cwd: masterDir,
    env: { ...env, QX_JOBS: '200', QX_WORKERS: '2', QX_SLEEP: '10', QX_TASK: '/src/task.js' },
  });
  const victimStarted = () =>
    fs
      .readdirSync(marks)
      .filter((f) => f.startsWith(`${victim.child.pid}-`))
      .map((f) => Number(f.slice(f.indexOf('-') + 1)));
  const deadline = Date.now() + 60000;
  while (victimStarted().length < 6) {
    assert.ok(Date.now() < deadline, `worker_1 did not start 6 jobs within 60 s: ${victimStarted()}`);
    assert.equal(victim.child.exitCode, null, `worker_1 exited early: ${victim.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  victim.child.kill('SIGKILL');
  const { signal } = await victim.exited;
  assert.equal(signal, 'SIGKILL');
  await master.next((l) => l.closed, 90000);
  const got = results(master);
  const ids = got.map((r) => r.jobID);
  assert.equal(ids.length, 200, 'every job came back exactly once');
  assert.deepEqual([...new Set(ids)].sort((a, b) => a - b), Array.from({ length: 200 }, (_, i) => i));
  // Each job worker_1 started has its one result from worker_1 (the 5 it finished) or, when it was
  // mid-job at the kill, from worker_2; at least the job it hung in is of the second kind.
  const byId = new Map(got.map((r) => [r.jobID, r]));
  const started = victimStarted();
  const takenOver = started.filter((id) => byId.get(id).worker.name !== 'worker_1');
  assert.ok(takenOver.length >= 1, `a job worker_1 held when killed was done by another worker: ${started}`);
  for (const id of takenOver) {
    const r = byId.get(id);
    assert.equal(r.worker.name, 'worker_2', `job ${id}, leased by the killed worker, was done by the other`);
    assert.equal(r.error, undefined);
    assert.equal(r.data.square, id * id);
  }
  assert.ok(got.filter((r) => r.worker.name === 'worker_1').length <= 5, 'worker_1 finished nothing after it hung');
  assert.ok(master.lines.some((l) => l.left && l.left.name === 'worker_1'), 'the master saw the worker leave');
  survivor.child.kill('SIGTERM');
});

test('a task that throws or rejects reaches the master as a job error, and the worker carries on', async (t) => {
  const env = testEnv(t);
  const { masterDir, workerDirs } = layout(t, 1);
  const [worker] = startWorkers(t, env, workerDirs);
  const master = run(t, MASTER, {
    cwd: masterDir,
    env: { ...env, QX_JOBS: '20', QX_WORKERS: '1', QX_FAIL_EVERY: '5', QX_OPTIONS: JSON.stringify({ retries: 0 }), QX_TASK: '/src/task.js' },
  });
  await master.next((l) => l.closed, 60000);
  const got = results(master);
  assert.equal(got.length, 20);
  const failed = got.filter((r) => r.error !== undefined);
  assert.deepEqual(failed.map((r) => r.jobID).sort((a, b) => a - b), [0, 5, 10, 15]);
  for (const r of failed) {
    assert.equal(r.error, `task failed on purpose for job ${r.jobID}`);
    assert.equal(r.worker.name, 'worker_1');
    assert.equal(r.data, undefined);
  }
  assert.equal(got.filter((r) => r.data && r.data.square !== undefined).length, 16, 'the jobs after a failure still ran');
  const errors = master.lines.filter((l) => l.error);
  assert.deepEqual(errors.map((l) => l.error.jobID).sort((a, b) => a - b), [0, 5, 10, 15], "an 'error' event fired per failed job");
  assert.ok(errors.every((l) => l.error.code === 'ERR_QUEUEXEC_JOB'));
  worker.child.kill('SIGTERM');
});

test("failed jobs do not crash a master that has no 'error' listener (code written for queue-xec)", async (t) => {
  const env = testEnv(t);
  const { masterDir, workerDirs } = layout(t, 1);
  const [worker] = startWorkers(t, env, workerDirs);
  const master = run(t, MASTER, {
    cwd: masterDir,
    env: { ...env, QX_JOBS: '4', QX_WORKERS: '1', QX_FAIL_EVERY: '2', QX_NO_ERROR_LISTENER: '1', QX_OPTIONS: JSON.stringify({ retries: 0 }), QX_TASK: '/src/task.js' },
  });
  await master.next((l) => l.closed, 60000);
  assert.deepEqual(results(master).filter((r) => r.error).map((r) => r.jobID).sort(), [0, 2]);
  assert.equal(master.lines.filter((l) => l.error).length, 0);
  worker.child.kill('SIGTERM');
});

test('a failed job is retried (on another attempt) before it is reported', async (t) => {
  const env = testEnv(t);
  const cwd = tmpdir(t);
  // Fails on the first attempt only: the retry succeeds.
  fs.mkdirSync(path.join(cwd, 'src'));
  fs.writeFileSync(
    path.join(cwd, 'src', 'task.js'),
    `class Task { async run(job, ctx) { if (ctx.attempt === 1) throw new Error('flaky'); return { attempt: ctx.attempt }; } }
     module.exports = Task;`,
  );
  const [worker] = startWorkers(t, env, [tmpdir(t)]);
  const master = run(t, MASTER, { cwd, env: { ...env, QX_JOBS: '3', QX_WORKERS: '1', QX_OPTIONS: JSON.stringify({ retries: 2 }), QX_TASK: '/src/task.js' } });
  await master.next((l) => l.closed, 60000);
  const got = results(master);
  assert.deepEqual(got.map((r) => r.data && r.data.attempt), [2, 2, 2]);
  worker.child.kill('SIGTERM');
});

test('a job starts as soon as it is pushed (no polling interval)', async (t) => {
  const env = testEnv(t);
  const { masterDir, workerDirs } = layout(t, 1);
  const [worker] = startWorkers(t, env, workerDirs);
  const master = run(t, MASTER, { cwd: masterDir, env: { ...env, QX_JOBS: '1', QX_WORKERS: '1', QX_TASK: '/src/task.js' } });
  const line = await master.next((l) => l.result, 30000);
  // queue-xec workers asked for work every 30 s; here the idle worker gets the job at once
  // (the first job also waits for the worker to fetch task.js).
  assert.ok(line.ms < 3000, `result after ${line.ms} ms`);
  worker.child.kill('SIGTERM');
});

test('the worker reloads task.js when the master changes it', async (t) => {
  const env = testEnv(t);
  const cwd = tmpdir(t);
  fs.mkdirSync(path.join(cwd, 'src'));
  const taskPath = path.join(cwd, 'src', 'task.js');
  const version = (v) => fs.writeFileSync(taskPath, `class Task { async run() { return { version: ${v} }; } }\nmodule.exports = Task;\n`);
  version(1);
  const script = path.join(cwd, 'change.js');
  fs.writeFileSync(
    script,
    `const Master = require(${JSON.stringify(require.resolve('queue-xec-master'))});
     const fs = require('fs');
     const out = (o) => console.log(JSON.stringify(o));
     const mm = new Master({ execAssets: { files: [{ masterPath: '/src/task.js', name: 'task.js', workerPath: '/workplace/task.js' }] },
       onResults: (r) => out({ result: r }) });
     mm.on('workerJoined', async () => {
       await mm.pushNewJob({ id: 'first' });
       await new Promise((r) => mm.once('result', r));
       fs.writeFileSync(${JSON.stringify(taskPath)}, 'class Task { async run() { return { version: 2 }; } }\\nmodule.exports = Task;\\n');
       out({ changed: await mm.reloadAssets() });
       await mm.pushNewJob({ id: 'second' });
       await new Promise((r) => mm.once('result', r));
       await mm.close();
     });`,
  );
  const [worker] = startWorkers(t, env, [tmpdir(t)]);
  const master = run(t, script, { cwd, env });
  await master.next((l) => l.result && l.result.jobID === 'second', 60000);
  const got = results(master);
  assert.deepEqual(got.map((r) => [r.jobID, r.data.version]), [['first', 1], ['second', 2]]);
  assert.ok(master.lines.some((l) => l.changed === true));
  await worker.next((l) => l.assets && l.assets.fetched >= 1, 1000, 2);
  worker.child.kill('SIGTERM');
});

test('announced dependencies are installed with npm when they do not resolve, then required by task.js', async (t) => {
  const env = testEnv(t);
  const cwd = tmpdir(t);
  // A local package tarball stands in for a registry package (the tests use no network).
  const pkgDir = tmpdir(t, 'qx-dep-');
  fs.writeFileSync(path.join(pkgDir, 'package.json'), JSON.stringify({ name: 'qx-fake-dep', version: '1.0.0', main: 'index.js' }));
  fs.writeFileSync(path.join(pkgDir, 'index.js'), 'module.exports = (x) => `dep:${x}`;');
  fs.mkdirSync(path.join(cwd, 'src'));
  fs.writeFileSync(
    path.join(cwd, 'src', 'task.js'),
    `const dep = require('qx-fake-dep');\nclass Task { async run(job) { return dep(job.id); } }\nmodule.exports = Task;\n`,
  );
  const workerDir = tmpdir(t);
  fs.writeFileSync(path.join(workerDir, 'package.json'), JSON.stringify({ name: 'worker-project', private: true }));
  const [worker] = startWorkers(t, env, [workerDir]);
  const master = run(t, MASTER, {
    cwd,
    env: { ...env, QX_JOBS: '2', QX_WORKERS: '1', QX_TASK: '/src/task.js', QX_DEPS: JSON.stringify([pkgDir]) },
  });
  await master.next((l) => l.closed, 120000);
  assert.deepEqual(results(master).map((r) => r.data).sort(), ['dep:0', 'dep:1']);
  assert.ok(fs.existsSync(path.join(workerDir, 'node_modules', 'qx-fake-dep', 'index.js')), 'installed in the worker project');
  worker.child.kill('SIGTERM');
});

test('with storePath, jobs pushed before a master restart are done after it', async (t) => {
  const env = testEnv(t);
  const { masterDir, workerDirs } = layout(t, 1);
  const store = path.join(masterDir, 'jobs.sqlite');
  // First master: accepts 30 jobs (durably) with no worker around, then stops.
  const first = run(t, MASTER, { cwd: masterDir, env: { ...env, QX_JOBS: '30', QX_STORE: store, QX_TASK: '/src/task.js' } });
  await first.next((l) => l.pushed === 30, 30000);
  first.child.kill('SIGKILL');
  await first.exited;
  // Second master on the same store pushes nothing; the worker does the 30 resumed jobs.
  const second = run(t, MASTER, { cwd: masterDir, env: { ...env, QX_JOBS: '0', QX_EXIT_AFTER: '30', QX_STORE: store, QX_TASK: '/src/task.js' } });
  await second.next((l) => l.ready, 30000);
  const [worker] = startWorkers(t, env, workerDirs);
  await second.next((l) => l.closed, 60000);
  const ids = results(second).map((r) => String(r.jobID));
  assert.equal(new Set(ids).size, 30);
  worker.child.kill('SIGTERM');
});

test('sandbox: true runs task.js in the embedded runtime, where Node built-ins are out of reach', async (t) => {
  const env = testEnv(t);
  const cwd = tmpdir(t);
  fs.mkdirSync(path.join(cwd, 'src'));
  fs.writeFileSync(
    path.join(cwd, 'src', 'task.js'),
    `class Task {
       async run(job) {
         const data = JSON.parse(job.data);
         if (data.fs) return require('fs').readFileSync('/etc/hostname', 'utf8');
         return { square: data.n * data.n };
       }
     }
     module.exports = Task;`,
  );
  const workerDir = tmpdir(t);
  const worker = run(t, WORKER, { cwd: workerDir, env: { ...env, QX_NAME: 'sandboxed', QX_SANDBOX: '1' } });
  const script = path.join(cwd, 'sandbox.js');
  fs.writeFileSync(
    script,
    `const Master = require(${JSON.stringify(require.resolve('queue-xec-master'))});
     const got = [];
     const mm = new Master({ execAssets: { files: [{ masterPath: '/src/task.js', name: 'task.js', workerPath: '/workplace/task.js' }] },
       onResults: (r) => { got.push(r); if (got.length === 2) { console.log(JSON.stringify({ got })); mm.close(); } } });
     mm.on('workerJoined', () => Promise.all([
       mm.pushNewJob({ id: 'calc', data: JSON.stringify({ n: 7 }) }),
       mm.pushNewJob({ id: 'escape', data: JSON.stringify({ fs: true }) }, { retries: 0 }),
     ]));`,
  );
  const master = run(t, script, { cwd, env });
  const { got } = await master.next((l) => l.got, 60000);
  const calc = got.find((r) => r.jobID === 'calc');
  assert.equal(calc.data.square, 49);
  assert.equal(calc.worker.name, 'sandboxed');
  const escape = got.find((r) => r.jobID === 'escape');
  assert.ok(escape.error, 'require("fs") is refused');
  assert.match(escape.error, /fs/);
  worker.child.kill('SIGTERM');
});
