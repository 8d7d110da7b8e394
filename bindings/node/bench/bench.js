#!/usr/bin/env node
'use strict';
// Benchmarks of the npm packages (run: `npm run bench` at the repository root).
//   1. pushNewJob calls per second from Node (in-memory store, no worker), both the way
//      queue-xec users write it (`await` each) and many at once (Promise.all).
//   2. End to end: no-op jobs per second through a master in this process and two Node worker
//      processes on loopback.
// Options: --jobs N (end-to-end jobs, default 20000), --pushes N (default 200000),
//          --store FILE (SQLite store instead of memory).

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : process.argv[i + 1];
};
const PUSHES = Number(arg('pushes', 200000));
const JOBS = Number(arg('jobs', 20000));
const STORE = arg('store', undefined);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qx-bench-'));
process.env.QUEUEXEC_ROOM_DIR = path.join(dir, 'rooms');
process.env.QUEUEXEC_MDNS = '0';
const tokens = () => ({ token: crypto.randomBytes(16).toString('hex'), transferEncryptToken: crypto.randomBytes(16).toString('hex') });

const Master = require('queue-xec-master');

async function pushRate() {
  const mm = new Master({ ...tokens(), watchAssets: false, storePath: STORE && `${STORE}.push` });
  await mm.ready;
  const payload = (i) => ({ id: i, data: '{"x":1,"y":2}' });
  let t0 = process.hrtime.bigint();
  const sequential = Math.min(PUSHES, 20000);
  for (let i = 0; i < sequential; i += 1) await mm.pushNewJob(payload(i));
  const seqSecs = Number(process.hrtime.bigint() - t0) / 1e9;
  t0 = process.hrtime.bigint();
  const chunk = 10000;
  for (let base = sequential; base < sequential + PUSHES; base += chunk) {
    const all = [];
    for (let i = base; i < base + chunk; i += 1) all.push(mm.pushNewJob(payload(i)));
    await Promise.all(all);
  }
  const parSecs = Number(process.hrtime.bigint() - t0) / 1e9;
  await mm.close();
  return { awaitedEach: sequential / seqSecs, concurrent: PUSHES / parSecs };
}

async function endToEnd() {
  const masterDir = path.join(dir, 'master');
  fs.mkdirSync(path.join(masterDir, 'src'), { recursive: true });
  fs.writeFileSync(path.join(masterDir, 'src', 'task.js'), 'class Task { async run(job) { return null; } }\nmodule.exports = Task;\n');
  const tk = tokens();
  let done = 0;
  let finish;
  const finished = new Promise((r) => {
    finish = r;
  });
  process.chdir(masterDir);
  const mm = new Master({
    ...tk,
    storePath: STORE,
    watchAssets: false,
    execAssets: { files: [{ masterPath: '/src/task.js', name: 'task.js', workerPath: '/workplace/task.js' }] },
    onResults: () => {
      done += 1;
      if (done === JOBS) finish();
    },
  });
  await mm.ready;
  const workerScript = path.join(dir, 'worker.js');
  fs.writeFileSync(workerScript, `const Worker = require(${JSON.stringify(require.resolve('queue-xec-worker'))});\nnew Worker({ name: process.env.NAME, batchSize: 64 });\n`);
  const children = [1, 2].map((n) => {
    const cwd = path.join(dir, `worker${n}`);
    fs.mkdirSync(cwd);
    return spawn(process.execPath, [workerScript], { cwd, env: { ...process.env, ...tk, NAME: `w${n}` }, stdio: 'inherit' });
  });
  let joined = 0;
  await new Promise((r) => mm.on('workerJoined', () => (++joined === 2 ? r() : null)));
  // Warm up: one job each so both workers have fetched task.js.
  await mm.pushNewJobs([{ id: 'warm1' }, { id: 'warm2' }]);
  await new Promise((r) => {
    let n = 0;
    mm.on('result', () => (++n === 2 ? r() : null));
  });
  done = 0;
  const t0 = process.hrtime.bigint();
  const payloads = Array.from({ length: JOBS }, (_, i) => ({ id: i, data: '{}' }));
  for (let i = 0; i < JOBS; i += 5000) await mm.pushNewJobs(payloads.slice(i, i + 5000));
  await finished;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const c of children) c.kill('SIGTERM');
  await mm.close();
  return { jobs: JOBS, seconds: secs, perSecond: JOBS / secs };
}

(async () => {
  const push = await pushRate();
  console.log(`pushNewJob, awaited one by one: ${Math.round(push.awaitedEach)} calls/s`);
  console.log(`pushNewJob, ${PUSHES} at once (Promise.all per 10000): ${Math.round(push.concurrent)} calls/s`);
  const e2e = await endToEnd();
  console.log(`end to end, two Node workers, no-op task: ${e2e.jobs} jobs in ${e2e.seconds.toFixed(2)} s = ${Math.round(e2e.perSecond)} jobs/s`);
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
