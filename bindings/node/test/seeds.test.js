'use strict';
// What users of the seed systems rely on (issue 12): cancel, pull-based producers. The master
// runs in this process, its workers are separate Node processes, on loopback, in a room of
// their own.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { tmpdir, testEnv, run, FIXTURES } = require('./helpers');
const Master = require('queue-xec-master');

const WORKER = path.join(FIXTURES, 'seeds-worker.js');
const TASK = path.join(FIXTURES, 'seeds-task.js');
const CANCELLED = 'the job was cancelled (cancel() on the master)';

/** This process's master uses the test's room directory and tokens; restored afterwards. */
function isolated(t) {
  const env = testEnv(t);
  const saved = { ...process.env };
  process.env.QUEUEXEC_ROOM_DIR = env.QUEUEXEC_ROOM_DIR;
  process.env.QUEUEXEC_MDNS = '0';
  t.after(() => {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  });
  return env;
}

function newMaster(t, env, options = {}) {
  const results = [];
  const mm = new Master({
    token: env.token,
    transferEncryptToken: env.transferEncryptToken,
    execAssets: { files: [{ masterPath: TASK, name: 'task.js', workerPath: '/workplace/task.js' }] },
    watchAssets: false,
    onResults: (r) => results.push(r),
    ...options,
  });
  t.after(() => mm.close());
  return { mm, results };
}

function startWorkers(t, env, n, extra = {}) {
  return Array.from({ length: n }, (_, i) =>
    run(t, WORKER, { cwd: tmpdir(t, 'qx-worker-'), env: { ...env, QX_NAME: `worker_${i + 1}`, ...extra } }),
  );
}

async function until(what, pred, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = pred();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const job = (id, data) => ({ id, data: JSON.stringify(data) });

test('cancel(jobId) ends a running job (its signal aborts in the worker process), a delayed and a queued one', async (t) => {
  const env = isolated(t);
  const marks = tmpdir(t, 'qx-marks-');
  const { mm, results } = newMaster(t, env);
  await mm.ready;
  const [worker] = startWorkers(t, env, 1, { QX_MARK_DIR: marks });
  await worker.next((l) => l.connected);
  await mm.pushNewJob(job('hang', { hang: true }));
  await mm.pushNewJob(job('later', { n: 2 }), { delay: 60000 });
  await until('the hanging job to start on the worker', () => fs.existsSync(path.join(marks, 'started-hang')));
  // The worker runs one job at a time: this one waits behind the hanging one.
  await mm.pushNewJob(job('queued', { n: 3 }), { priority: -1 });

  assert.equal(await mm.cancel('hang'), 1);
  await until('the abort in the worker', () => fs.existsSync(path.join(marks, 'aborted-hang')));
  assert.equal(fs.readFileSync(path.join(marks, 'aborted-hang'), 'utf8'), 'the job was cancelled by the master');
  await worker.next((l) => l.cancelled && l.cancelled.jobID === 'hang');
  assert.equal(await mm.cancel('later'), 1, 'a delayed job');
  assert.equal(await mm.cancel('later'), 0, 'cancelled already');
  assert.equal(await mm.cancel('no such job'), 0);

  // The worker goes on: the queued job and new ones finish there.
  await mm.pushNewJob(job('after', { n: 4 }));
  await until('four results', () => results.length >= 4);
  const byId = Object.fromEntries(results.map((r) => [r.jobID, r]));
  assert.equal(byId.hang.error, CANCELLED);
  assert.equal(byId.later.error, CANCELLED);
  assert.equal(byId.queued.data.square, 9);
  assert.equal(byId.after.data.square, 16);
  assert.equal(byId.queued.worker.name, 'worker_1');
  // Nothing else comes: the cancelled job's own (aborted) end is not a second result.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(results.length, 4);
  const stats = await mm.stats();
  assert.equal(stats.dead, 2);
  assert.equal(stats.done, 2);
  assert.equal(stats.running + stats.queued + stats.delayed, 0);

  // A job queued behind a busy worker is cancelled before it runs.
  await mm.pushNewJob(job('hang2', { hang: true }));
  await until('the second hanging job to start', () => fs.existsSync(path.join(marks, 'started-hang2')));
  await mm.pushNewJob(job('waiting', { n: 5 }));
  assert.equal(await mm.cancel('waiting'), 1);
  assert.equal(await mm.cancel('hang2'), 1);
  await until('six results', () => results.length >= 6);
  assert.ok(!fs.existsSync(path.join(marks, 'started-waiting')));
  assert.ok(results.slice(4).every((r) => r.error === CANCELLED));
  await assert.rejects(mm.cancel(), /cancel takes the id of a job/);
});

test('getTasks / handleResults: 1000 jobs pulled in batches by two worker processes, then end', { timeout: 120000 }, async (t) => {
  const env = isolated(t);
  const TOTAL = 1000;
  const BATCH = 25;
  let next = 0;
  let maxOutstanding = 0;
  const asked = [];
  const batches = [];
  const results = [];
  const { mm } = newMaster(t, env, {
    onResults: (r) => results.push(r),
    batchSize: BATCH,
    // Async, as a producer reading a database would be.
    getTasks: async (n) => {
      asked.push(n);
      await new Promise((r) => setImmediate(r));
      const tasks = [];
      while (tasks.length < n && next < TOTAL) {
        tasks.push({ id: next, data: JSON.stringify({ n: next }) });
        next += 1;
      }
      maxOutstanding = Math.max(maxOutstanding, next - results.length);
      return tasks;
    },
    handleResults: async (batch) => {
      batches.push(batch);
    },
  });
  const ended = new Promise((resolve) => mm.once('end', resolve));
  await mm.ready;
  const workers = startWorkers(t, env, 2, { QX_CONCURRENCY: '2' });
  const info = await ended;
  assert.deepEqual(info, { jobs: TOTAL });
  assert.ok(asked.every((n) => n === BATCH));
  const all = batches.flat();
  assert.equal(all.length, TOTAL);
  assert.deepEqual(all.map((r) => r.jobID).sort((a, b) => a - b), Array.from({ length: TOTAL }, (_, i) => i));
  assert.ok(all.every((r) => r.data.square === r.jobID * r.jobID));
  assert.ok(batches.every((b) => b.length >= 1 && b.length <= BATCH));
  assert.ok(batches.slice(0, -1).every((b) => b.length === BATCH), 'full batches but the last');
  // onResults still sees each result.
  assert.equal(results.length, TOTAL);
  // Never more than a few batches produced ahead of the results handed back.
  assert.ok(maxOutstanding <= 3 * BATCH, `at most three batches outstanding, saw ${maxOutstanding}`);
  assert.deepEqual(new Set(all.map((r) => r.worker.name)), new Set(['worker_1', 'worker_2']));
  for (const w of workers) w.child.kill('SIGTERM');
});

test('getTasks that returns nothing at once ends at once; bad producer options are refused', async (t) => {
  const env = isolated(t);
  const { mm } = newMaster(t, env, { getTasks: () => [] });
  const info = await new Promise((resolve) => mm.once('end', resolve));
  assert.deepEqual(info, { jobs: 0 });
  const base = { token: env.token, transferEncryptToken: env.transferEncryptToken, watchAssets: false };
  assert.throws(() => new Master({ ...base, getTasks: 5 }), /getTasks must be a function/);
  assert.throws(() => new Master({ ...base, handleResults: () => {} }), /handleResults needs getTasks/);
  assert.throws(() => new Master({ ...base, getTasks: () => [], batchSize: 0 }), /batchSize must be a whole number/);
});
