#!/usr/bin/env node
'use strict';
// The Node side of scripts/bench.sh: one workload per call, on queuexec's npm packages or on a
// peer (BullMQ on Redis, Piscina, raw TCP). Prints one JSON line on stdout with what it
// measured; progress goes to stderr. Called by bench/driver.py, e.g.
//   node bench/peers.js qx-s1 --jobs 20000 --workers 2
//   node bench/peers.js bullmq-s1 --jobs 20000 --workers 2 --redis 127.0.0.1:6390
// Every wait has a deadline, and every child process started here is killed by its PID.

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const [, , command, ...rest] = process.argv;
const opt = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i === -1 ? fallback : rest[i + 1];
};
const num = (name, fallback) => Number(opt(name, fallback));
const DEPS = path.join(__dirname, '.deps', 'node_modules');
const peer = (name) => require(path.join(DEPS, name));
const DEADLINE_MS = num('deadline', 600) * 1000;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'qx-peers-'));
process.env.QUEUEXEC_ROOM_DIR = path.join(scratch, 'rooms');
process.env.QUEUEXEC_MDNS = '0';
process.env.LOG_LEVEL = process.env.LOG_LEVEL || 'warn';
const children = [];
const tokens = () => ({ token: crypto.randomBytes(16).toString('hex'), transferEncryptToken: crypto.randomBytes(16).toString('hex') });
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function percentiles(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p) => s[Math.min(s.length - 1, Math.floor(s.length * p))];
  return { p50: at(0.5), p99: at(0.99), samples: s.length };
}

function child(args, env, cwd) {
  const c = spawn(process.execPath, args, { cwd: cwd || scratch, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(c);
  return c;
}

function lineFrom(c, what) {
  return within(
    new Promise((resolve, reject) => {
      let buf = '';
      c.stdout.on('data', (d) => {
        buf += d;
        const i = buf.indexOf('\n');
        if (i !== -1) resolve(buf.slice(0, i));
      });
      c.on('exit', (code) => reject(new Error(`${what} exited (${code}) before it was ready`)));
    }),
    60000,
    what,
  );
}

// ---- queuexec (npm packages) ----------------------------------------------------------------

const TASK_NOOP = 'class Task { async run() { return null; } }\nmodule.exports = Task;\n';
const TASK_LEN = 'class Task { async run(job) { return typeof job.data === "string" ? job.data.length : 0; } }\nmodule.exports = Task;\n';

/** A queue-xec-master in this process, with task.js, a SQLite store (durable) unless told. */
async function qxMaster(tk, { task = TASK_NOOP, durable = true, onResult } = {}) {
  const Master = require('queue-xec-master');
  const dir = fs.mkdtempSync(path.join(scratch, 'master-'));
  fs.mkdirSync(path.join(dir, 'src'));
  fs.writeFileSync(path.join(dir, 'src', 'task.js'), task);
  const cwd = process.cwd();
  process.chdir(dir);
  const master = new Master({
    ...tk,
    storePath: durable ? path.join(dir, 'jobs.sqlite') : undefined,
    watchAssets: false,
    execAssets: { files: [{ masterPath: '/src/task.js', name: 'task.js', workerPath: '/workplace/task.js' }] },
    onResults: onResult || (() => {}),
  });
  process.chdir(cwd);
  await within(master.ready, 30000, 'the master');
  return master;
}

function qxWorkers(count, tk, { concurrency = 64, batchSize = 256 } = {}) {
  const script = path.join(scratch, 'qx-worker.js');
  fs.writeFileSync(
    script,
    `const Worker = require(${JSON.stringify(require.resolve('queue-xec-worker'))});\n` +
      `new Worker({ name: process.env.NAME, concurrency: ${concurrency}, batchSize: ${batchSize} });\n`,
  );
  return Array.from({ length: count }, (_, n) => {
    const cwd = fs.mkdtempSync(path.join(scratch, `w${n}-`));
    return child([script], { ...tk, NAME: `w${n}` }, cwd);
  });
}

async function joined(master, count) {
  let n = (await master.stats()).workers ?? 0;
  if (n >= count) return;
  await within(
    new Promise((resolve) => {
      master.on('workerJoined', () => {
        n += 1;
        if (n >= count) resolve();
      });
    }),
    60000,
    `${count} workers joining`,
  );
}

/** Resolves when `count` more results arrived (counted by the caller's onResult). */
function counter() {
  const c = { seen: 0, target: Infinity, resolve: null, failed: 0 };
  c.onResult = (r) => {
    if (r && r.error !== undefined) c.failed += 1;
    c.seen += 1;
    if (c.seen >= c.target && c.resolve) c.resolve();
  };
  c.until = (target) => {
    c.target = target;
    return within(
      new Promise((resolve) => {
        c.resolve = resolve;
        if (c.seen >= target) resolve();
      }),
      DEADLINE_MS,
      `${target} results`,
    );
  };
  return c;
}

async function qxThroughput({ jobs, workers, task, payload, concurrency, batchSize, chunk = 5000 }) {
  const tk = tokens();
  const results = counter();
  const master = await qxMaster(tk, { task, onResult: results.onResult });
  qxWorkers(workers, tk, { concurrency, batchSize });
  await joined(master, workers);
  // Warm-up: every worker fetches task.js and loads it.
  await master.pushNewJobs(Array.from({ length: 50 * workers }, (_, i) => ({ id: `warm${i}`, data: payload(0) })));
  await results.until(50 * workers);
  results.seen = 0;
  results.failed = 0;
  const t0 = now();
  for (let i = 0; i < jobs; i += chunk) {
    const n = Math.min(chunk, jobs - i);
    await master.pushNewJobs(Array.from({ length: n }, (_, k) => ({ id: i + k, data: payload(i + k) })));
  }
  await results.until(jobs);
  const seconds = (now() - t0) / 1000;
  await master.close();
  if (results.failed) throw new Error(`${results.failed} jobs failed`);
  return { jobs, workers, seconds, perSecond: jobs / seconds };
}

async function qxS2() {
  const samples = num('samples', 1000);
  const tk = tokens();
  let waiter = null;
  const master = await qxMaster(tk, { durable: opt('store', 'sqlite') === 'sqlite', onResult: () => waiter && waiter() });
  if (opt('worker', 'node') === 'cli') {
    const cwd = fs.mkdtempSync(path.join(scratch, 's2-'));
    children.push(spawn(process.env.QUEUEXEC_BENCH_CLI, ['worker', '--builtin', 'echo', '--prefetch', '0'], { cwd, env: { ...process.env, ...tk }, stdio: 'ignore' }));
  } else {
    qxWorkers(1, tk, { concurrency: 1, batchSize: 0 });
  }
  await joined(master, 1);
  const rtts = [];
  for (let i = 0; i < samples + 200; i += 1) {
    const done = new Promise((resolve) => {
      waiter = resolve;
    });
    const t0 = now();
    await master.pushNewJob({ id: `r${i}`, data: {} });
    await within(done, 10000, 'a round trip');
    if (i >= 200) rtts.push((now() - t0) * 1000);
    await new Promise((r) => setTimeout(r, 1)); // the worker is idle when the next job comes
  }
  await master.close();
  return percentiles(rtts);
}

async function qxS4() {
  const jobs = num('jobs', 1000000);
  const tk = tokens();
  const master = await qxMaster(tk);
  const chunk = 10000;
  // Warm-up and the baseline after it: the store and the allocator's arenas exist.
  await master.pushNewJobs(Array.from({ length: chunk }, (_, k) => ({ id: `w${k}`, data: { n: k } })));
  global.gc && global.gc();
  const rss0 = process.memoryUsage().rss;
  const t0 = now();
  for (let i = 0; i < jobs; i += chunk) {
    const n = Math.min(chunk, jobs - i);
    await master.pushNewJobs(Array.from({ length: n }, (_, k) => ({ id: i + k, data: { n: i + k } })));
  }
  const seconds = (now() - t0) / 1000;
  global.gc && global.gc();
  await new Promise((r) => setTimeout(r, 500));
  global.gc && global.gc();
  const rss1 = process.memoryUsage().rss;
  const stats = await master.stats();
  await master.close();
  return { jobs, seconds, perSecond: jobs / seconds, bytesPerJob: (rss1 - rss0) / jobs, queued: stats.queued };
}

/** Join -> first job: a worker process (CLI or Node) started against a master with work queued. */
async function qxS5() {
  const kind = opt('kind', 'cli');
  const runs = num('runs', 5);
  const out = [];
  for (let r = 0; r < runs; r += 1) {
    const tk = tokens();
    let first = null;
    let joinedAt = null;
    const master = await qxMaster(tk, { onResult: () => first === null && (first = now()) });
    master.on('workerJoined', () => joinedAt === null && (joinedAt = now()));
    await master.pushNewJob({ id: 'first', data: { hello: 1 } });
    const cwd = fs.mkdtempSync(path.join(scratch, 's5-'));
    const t0 = now();
    let proc;
    if (kind === 'cli') {
      proc = spawn(process.env.QUEUEXEC_BENCH_CLI, ['worker', '--builtin', 'echo', '--name', 's5'], {
        cwd,
        env: { ...process.env, ...tk },
        stdio: 'ignore',
      });
      children.push(proc);
    } else {
      [proc] = qxWorkers(1, tk, { concurrency: 1, batchSize: 1 });
    }
    await within(
      new Promise((resolve) => {
        const poll = setInterval(() => first !== null && (clearInterval(poll), resolve()), 1);
      }),
      30000,
      'the first result',
    );
    out.push({ spawnToResult: first - t0, joinToResult: first - (joinedAt ?? t0) });
    proc.kill('SIGKILL');
    await master.close();
  }
  const med = (k) => out.map((o) => o[k]).sort((a, b) => a - b)[Math.floor(out.length / 2)];
  return { kind, runs, spawnToResultMs: med('spawnToResult'), joinToResultMs: med('joinToResult') };
}

// ---- BullMQ ---------------------------------------------------------------------------------

function redisConnection() {
  const [host, port] = opt('redis', '127.0.0.1:6379').split(':');
  return { host, port: Number(port), maxRetriesPerRequest: null };
}

function bullWorkers(count, queueName, { concurrency = 64, processor = 'async () => null' } = {}) {
  const script = path.join(scratch, 'bull-worker.js');
  fs.writeFileSync(
    script,
    `const { Worker } = require(${JSON.stringify(path.join(DEPS, 'bullmq'))});\n` +
      `const w = new Worker(process.env.QUEUE, ${processor}, { connection: ${JSON.stringify(redisConnection())}, concurrency: ${concurrency} });\n` +
      `w.waitUntilReady().then(() => console.log('ready'));\n`,
  );
  return Array.from({ length: count }, () => child([script], { QUEUE: queueName }));
}

async function bullThroughput({ jobs, workers, payload, concurrency, chunk = 1000 }) {
  const { Queue } = peer('bullmq');
  const name = `bench-${crypto.randomBytes(4).toString('hex')}`;
  const queue = new Queue(name, { connection: redisConnection() });
  const procs = bullWorkers(workers, name, { concurrency, processor: 'async (job) => (typeof job.data.d === "string" ? job.data.d.length : null)' });
  await Promise.all(procs.map((p, i) => lineFrom(p, `BullMQ worker ${i}`)));
  const t0 = now();
  for (let i = 0; i < jobs; i += chunk) {
    const n = Math.min(chunk, jobs - i);
    await queue.addBulk(Array.from({ length: n }, (_, k) => ({ name: 'noop', data: { d: payload(i + k) } })));
  }
  const end = Date.now() + DEADLINE_MS;
  for (;;) {
    const done = (await queue.getCompletedCount()) + (await queue.getFailedCount());
    if (done >= jobs) break;
    if (Date.now() > end) throw new Error(`BullMQ: ${done} of ${jobs} done at the deadline`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const seconds = (now() - t0) / 1000;
  const failed = await queue.getFailedCount();
  for (const p of procs) p.kill('SIGTERM');
  await queue.obliterate({ force: true });
  await queue.close();
  if (failed) throw new Error(`BullMQ: ${failed} jobs failed`);
  return { jobs, workers, seconds, perSecond: jobs / seconds };
}

async function bullS2() {
  const samples = num('samples', 1000);
  const { Queue, QueueEvents } = peer('bullmq');
  const name = `rtt-${crypto.randomBytes(4).toString('hex')}`;
  const queue = new Queue(name, { connection: redisConnection() });
  const events = new QueueEvents(name, { connection: redisConnection() });
  await events.waitUntilReady();
  const [proc] = bullWorkers(1, name, { concurrency: 1 });
  await lineFrom(proc, 'BullMQ worker');
  const rtts = [];
  for (let i = 0; i < samples + 100; i += 1) {
    const t0 = now();
    const job = await queue.add('noop', {});
    await within(job.waitUntilFinished(events, 10000), 11000, 'a BullMQ round trip');
    if (i >= 100) rtts.push((now() - t0) * 1000);
  }
  proc.kill('SIGTERM');
  await queue.obliterate({ force: true });
  await events.close();
  await queue.close();
  return percentiles(rtts);
}

async function bullS4() {
  const jobs = num('jobs', 1000000);
  const { Queue } = peer('bullmq');
  const Redis = peer('ioredis');
  const redis = new Redis(redisConnection());
  const memory = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))[1]);
  const name = `s4-${crypto.randomBytes(4).toString('hex')}`;
  const queue = new Queue(name, { connection: redisConnection() });
  await queue.waitUntilReady();
  const m0 = await memory();
  const chunk = 1000;
  const t0 = now();
  for (let i = 0; i < jobs; i += chunk) {
    const n = Math.min(chunk, jobs - i);
    await queue.addBulk(Array.from({ length: n }, (_, k) => ({ name: 'noop', data: { n: i + k } })));
  }
  const seconds = (now() - t0) / 1000;
  const m1 = await memory();
  await queue.obliterate({ force: true });
  await queue.close();
  redis.disconnect();
  return { jobs, seconds, perSecond: jobs / seconds, bytesPerJob: (m1 - m0) / jobs };
}

// ---- Piscina and the TCP floor --------------------------------------------------------------

async function piscinaS1() {
  const jobs = num('jobs', 20000);
  const Piscina = peer('piscina');
  const file = path.join(scratch, 'noop-task.js');
  fs.writeFileSync(file, 'module.exports = () => null;\n');
  const pool = new Piscina({ filename: file, minThreads: 2, maxThreads: 2 });
  await Promise.all(Array.from({ length: 100 }, () => pool.run({})));
  const t0 = now();
  for (let i = 0; i < jobs; i += 10000) {
    await Promise.all(Array.from({ length: Math.min(10000, jobs - i) }, (_, k) => pool.run({ n: i + k })));
  }
  const seconds = (now() - t0) / 1000;
  await pool.destroy();
  return { jobs, workers: 2, seconds, perSecond: jobs / seconds };
}

async function tcpS2() {
  const samples = num('samples', 1000);
  const script = path.join(scratch, 'echo-server.js');
  fs.writeFileSync(
    script,
    "const net = require('node:net');\n" +
      "const s = net.createServer((c) => { c.setNoDelay(true); c.on('data', (d) => c.write(d)); });\n" +
      "s.listen(0, '127.0.0.1', () => console.log(s.address().port));\n",
  );
  const proc = child([script], {});
  const port = Number(await lineFrom(proc, 'the echo server'));
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await within(new Promise((r) => socket.once('connect', r)), 5000, 'connect');
  const rtts = [];
  const message = Buffer.alloc(64, 1);
  for (let i = 0; i < samples + 200; i += 1) {
    const t0 = now();
    const echoed = new Promise((resolve) => {
      let got = 0;
      const on = (d) => {
        got += d.length;
        if (got >= message.length) {
          socket.off('data', on);
          resolve();
        }
      };
      socket.on('data', on);
    });
    socket.write(message);
    await within(echoed, 5000, 'an echo');
    if (i >= 200) rtts.push((now() - t0) * 1000);
    await new Promise((r) => setTimeout(r, 1));
  }
  socket.destroy();
  return percentiles(rtts);
}

// ---- main -----------------------------------------------------------------------------------

const MIB = 1024 * 1024;
const big = 'x'.repeat(MIB - 16);
const commands = {
  'qx-s1': () =>
    qxThroughput({
      jobs: num('jobs', 20000),
      workers: num('workers', 2),
      concurrency: num('concurrency', 64),
      batchSize: num('batch', 256),
      payload: () => ({}),
    }),
  'qx-s2': qxS2,
  'qx-s3': async () => {
    const r = await qxThroughput({ jobs: num('jobs', 200), workers: 2, concurrency: 2, batchSize: 2, task: TASK_LEN, payload: () => big, chunk: 20 });
    return { ...r, MBps: (r.perSecond * MIB) / 1e6 };
  },
  'qx-s4': qxS4,
  'qx-s5': qxS5,
  'bullmq-s1': () => bullThroughput({ jobs: num('jobs', 20000), workers: num('workers', 2), concurrency: num('concurrency', 64), payload: () => null }),
  'bullmq-s2': bullS2,
  'bullmq-s3': async () => {
    const r = await bullThroughput({ jobs: num('jobs', 200), workers: 2, concurrency: 2, payload: () => big, chunk: 20 });
    return { ...r, MBps: (r.perSecond * MIB) / 1e6 };
  },
  'bullmq-s4': bullS4,
  'piscina-s1': piscinaS1,
  'tcp-s2': tcpS2,
};

(async () => {
  const run = commands[command];
  if (!run) throw new Error(`unknown workload ${JSON.stringify(command)}; one of ${Object.keys(commands).join(', ')}`);
  const out = await within(run(), DEADLINE_MS + 60000, command);
  console.log(JSON.stringify(out));
})()
  .catch((e) => {
    console.error(`[peers] ${command}: ${e.stack || e}`);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    fs.rmSync(scratch, { recursive: true, force: true });
    setTimeout(() => process.exit(), 200).unref();
  });
