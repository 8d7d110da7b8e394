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

function newMaster(t, env, options = {}, task = TASK) {
  const results = [];
  const mm = new Master({
    token: env.token,
    transferEncryptToken: env.transferEncryptToken,
    execAssets: { files: [{ masterPath: task, name: 'task.js', workerPath: '/workplace/task.js' }] },
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
    const value = await pred();
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

test('lookups held by the master (objects and Maps), messages both ways and abort, with two worker processes', { timeout: 120000 }, async (t) => {
  const env = isolated(t);
  const { mm, results } = newMaster(t, env, {
    lookups: { fruits: { a: 'apple', b: 'banana' }, veggies: new Map([['c', 'carrot']]) },
  });
  const asked = [];
  // Assigned as a method, as okanjo-conductor does; its return value (or promise) is the reply.
  mm.onWorkerMessage = async function onWorkerMessage(workerId, msg) {
    asked.push({ workerId, msg });
    if (msg.cmd === 'double') return { twice: msg.data.n * 2, by: this.peerId };
    if (msg.cmd === 'hello') return { hi: msg.data.from };
    throw new Error(`no such command ${msg.cmd}`);
  };
  await mm.ready;
  assert.equal(mm.getLookupValue('fruits', 'a'), 'apple');
  assert.equal(mm.getLookupValue('veggies', 'c'), 'carrot');
  const workers = startWorkers(t, env, 2, { QX_ASK: '1' });
  for (const w of workers) await w.next((l) => l.asked);
  assert.deepEqual(workers.map((w) => w.lines.find((l) => l.asked).asked).sort((a, b) => a.hi.localeCompare(b.hi)), [
    { hi: 'worker_1' },
    { hi: 'worker_2' },
  ]);
  const N = 20;
  await mm.pushNewJobs(Array.from({ length: N }, (_, n) => job(n, { lookups: true, n, fruit: n % 2 ? 'a' : 'b', veggie: 'c' })));
  await until(`${N} results`, () => results.length >= N, 60000);
  for (const r of results) {
    assert.equal(r.error, undefined, r.error);
    const n = r.jobID;
    assert.equal(r.data.fruit, n % 2 ? 'apple' : 'banana');
    assert.equal(r.data.veggie, 'carrot');
    assert.deepEqual(r.data.back, { by: r.data.back.by, fruit: r.data.fruit });
    assert.deepEqual(r.data.reply, { twice: 2 * n, by: mm.peerId });
    assert.match(r.data.refused, /no such command explode/);
    assert.equal(r.data.missing, undefined);
  }
  // setLookup wrote into the master's own lookups, from both worker processes.
  assert.equal(Object.keys(mm.lookups.seen).length, N);
  assert.equal(new Set(Object.values(mm.lookups.seen).map((v) => v.by)).size, 2);
  assert.equal(new Set(results.map((r) => r.worker.name)).size, 2);
  assert.ok(asked.every((a) => /^12D3/.test(a.workerId)));

  // Messages from the master: to one worker, then to all.
  const one = results.find((r) => r.worker.name === 'worker_1').worker.id;
  assert.equal(await mm.sendMessageToWorker(one, 'only', { x: 1 }), true);
  assert.equal(await mm.sendMessageToWorker('12D3KooWnobody', 'only', {}), false);
  assert.equal(await mm.broadcast('all', [1, 2]), 2);
  await workers[0].next((l) => l.message && l.message.cmd === 'all');
  await workers[1].next((l) => l.message && l.message.cmd === 'all');
  const firstGot = (w) => w.lines.filter((l) => l.message && l.message.cmd === 'only');
  assert.deepEqual(firstGot(workers[0]).map((l) => l.message.data), [{ x: 1 }]);
  assert.equal(firstGot(workers[1]).length, 0);

  // abort(): both workers stop and exit; unfinished jobs stay queued.
  await mm.pushNewJobs([job('h1', { hang: true }), job('h2', { hang: true }), job('h3', { n: 3 }), job('h4', { hang: true })]);
  await until('jobs running', async () => (await mm.stats()).running > 0);
  assert.equal(await mm.abort(), 2);
  for (const w of workers) {
    await w.next((l) => l.aborted);
    const { code } = await w.exited;
    assert.equal(code, 0);
  }
  await until('the workers to leave', async () => (await mm.stats()).workers === 0);
  const stats = await mm.stats();
  assert.equal(stats.running, 0);
  assert.ok(stats.queued >= 3, `the hanging jobs are queued again: ${JSON.stringify(stats)}`);
});

test('in-memory jobs run before the persistent ones of the same master, whatever their priority', { timeout: 90000 }, async (t) => {
  const env = isolated(t);
  const dir = tmpdir(t, 'qx-store-');
  const { mm, results } = newMaster(t, env, { storePath: path.join(dir, 'jobs.sqlite') });
  await mm.ready;
  await mm.pushNewJobs(Array.from({ length: 8 }, (_, n) => job(`durable-${n}`, { n })), { priority: 5 });
  await mm.pushNewJobs(Array.from({ length: 8 }, (_, n) => job(`memory-${n}`, { n })), { inMemory: true });
  // One worker, one job at a time: the order it runs them is the order the master hands them out.
  startWorkers(t, env, 1);
  await until('16 results', () => results.length >= 16, 60000);
  // The worker holds two jobs at once (one running, one waiting) and may start either first:
  // the master hands out all 8 in-memory jobs before any persistent one, so at most one
  // in-memory job (the last handed out) can finish after the first persistent one.
  const order = results.map((r) => r.jobID);
  const firstDurable = order.findIndex((id) => id.startsWith('durable-'));
  const lastMemory = order.findLastIndex((id) => id.startsWith('memory-'));
  assert.ok(firstDurable >= 7 && lastMemory <= 8, `persistent jobs ran before in-memory ones: ${order.join(', ')}`);
  assert.deepEqual(order.filter((id) => id.startsWith('memory-')).sort(), Array.from({ length: 8 }, (_, n) => `memory-${n}`));
  assert.deepEqual(order.filter((id) => id.startsWith('durable-')).sort(), Array.from({ length: 8 }, (_, n) => `durable-${n}`));
});

test("'stats' in okanjo-conductor's shape: jobs done, busy time and a task's ctx.metric, from two worker processes", { timeout: 90000 }, async (t) => {
  const env = isolated(t);
  const { mm, results } = newMaster(t, env, { statsInterval: 200 });
  const reports = [];
  mm.on('stats', (report) => reports.push(report));
  await mm.ready;
  startWorkers(t, env, 2, { QX_STATS_INTERVAL: '100', QX_CONCURRENCY: '2' });
  const N = 40;
  await mm.pushNewJobs(Array.from({ length: N }, (_, n) => job(n, { n, metric: 2, sleep: 5 })));
  await until(`${N} results`, () => results.length >= N, 60000);
  const full = await until('a report of every job', () => reports.find((r) => r.agg.last.jobsDone === N), 30000);
  assert.equal(full.agg.last.pages, 2 * N);
  assert.equal(full.agg.last.jobsFailed, 0);
  assert.ok(full.agg.last.busyMs >= N * 5 * 0.8, `busy time ${full.agg.last.busyMs} ms for ${N} jobs of 5 ms`);
  const workers = Object.entries(full.raw);
  assert.equal(workers.length, 2);
  const names = results.reduce((m, r) => m.set(r.worker.id, r.worker.name), new Map());
  for (const [id, line] of workers) {
    assert.equal(line.name, names.get(id));
    assert.ok(line.timeSpan > 0);
    assert.equal(line.last.pages, 2 * results.filter((r) => r.worker.id === id).length);
  }
  // diff: the change since the previous report; the sums of every diff add up to the total.
  const summed = reports.reduce((sum, r) => sum + r.agg.diff.jobsDone, 0);
  assert.equal(summed, reports[reports.length - 1].agg.last.jobsDone);
  assert.ok(full.avgTimeSpan > 0);
  assert.deepEqual(mm.lastStats, reports[reports.length - 1]);
});

test('localWorkers: two local worker processes, a crashed one started again (worker_crash), all leave when drained', { timeout: 120000 }, async (t) => {
  const env = isolated(t);
  const marks = tmpdir(t, 'qx-marks-');
  process.env.QX_MARK_DIR = marks;
  const errors = [];
  const exits = [];
  const { mm, results } = newMaster(t, env, { localWorkers: 2, exitWhenDrained: true, workerOptions: { concurrency: 1, workplace: tmpdir(t, 'qx-local-') } });
  mm.on('error', (e) => errors.push(e));
  mm.on('workerExit', (info) => exits.push(info));
  await mm.ready;
  const N = 30;
  await mm.pushNewJobs(Array.from({ length: N }, (_, n) => job(n, { n, sleep: 20, crashOnce: n === 5 })));
  await until(`${N} results`, () => results.length >= N, 90000);
  assert.deepEqual(results.map((r) => r.jobID).sort((a, b) => a - b), Array.from({ length: N }, (_, n) => n));
  assert.ok(results.every((r) => r.error === undefined && r.data.square === r.jobID * r.jobID));
  // The crash: reported as okanjo-conductor's worker_crash, and a workerExit with the signal.
  const crash = errors.find((e) => e.type === 'worker_crash');
  assert.ok(crash, `a worker_crash error: ${errors.map((e) => e.message)}`);
  assert.equal(crash.signal, 'SIGKILL');
  assert.equal(crash.pid, Number(fs.readFileSync(path.join(marks, 'crashed-5'), 'utf8')));
  assert.ok(exits.some((x) => x.id === crash.workerId && x.signal === 'SIGKILL'));
  // Jobs ran in processes other than this one, on at least two of them.
  const pids = new Set(results.map((r) => r.data.pid));
  assert.ok(!pids.has(process.pid));
  assert.ok(pids.size >= 2, `jobs ran in ${pids.size} processes`);
  // exitWhenDrained: every local worker left with code 0 and none was started again.
  await until('the local workers to leave', () => exits.filter((x) => x.code === 0).length === 2, 30000);
  assert.deepEqual(mm.localWorkerPids(), {});
});

test('the embedded runtime (sandbox) gives task.js the same ctx: lookups, messages and metrics, in two worker processes', { timeout: 120000 }, async (t) => {
  const env = isolated(t);
  const { mm, results } = newMaster(
    t,
    env,
    {
      lookups: { fruits: new Map([['a', 'apple'], ['b', 'banana']]) },
      onWorkerMessage: (workerId, msg) => {
        if (msg.cmd === 'double') return { twice: msg.data.n * 2 };
        throw new Error(`no such command ${msg.cmd}`);
      },
      statsInterval: 200,
    },
    path.join(FIXTURES, 'seeds-sandbox-task.js'),
  );
  const reports = [];
  mm.on('stats', (r) => reports.push(r));
  await mm.ready;
  startWorkers(t, env, 2, { QX_SANDBOX: '1', QX_STATS_INTERVAL: '100' });
  const N = 12;
  await mm.pushNewJobs(Array.from({ length: N }, (_, n) => job(n, { n, fruit: n % 2 ? 'a' : 'b' })));
  await until(`${N} results`, () => results.length >= N, 60000);
  for (const r of results) {
    assert.equal(r.error, undefined, r.error);
    assert.equal(r.data.fruit, r.jobID % 2 ? 'apple' : 'banana');
    assert.deepEqual(r.data.back, { fruit: r.data.fruit });
    assert.deepEqual(r.data.reply, { twice: 2 * r.jobID });
    assert.match(r.data.refused, /no such command explode/);
    assert.equal(r.data.missing, undefined);
    assert.equal(r.data.counted, true);
    assert.equal(r.data.id, String(r.jobID));
  }
  assert.equal(Object.keys(mm.lookups.seen).length, N);
  assert.equal(new Set(results.map((r) => r.worker.name)).size, 2);
  await until('the metric in the stats', () => reports.some((r) => r.agg.last.pages === 2 * N), 20000);
});
