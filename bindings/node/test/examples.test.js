'use strict';
// The ported README examples of the seed systems (examples/ at the repository root), run as a
// user runs them: `node examples/<seed>/<file>.js`, each with two local worker processes,
// asserting the output their README documents.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const { tmpdir, testEnv } = require('./helpers');

const EXAMPLES = path.resolve(__dirname, '..', '..', '..', 'examples');

function runExample(t, file, args = []) {
  const env = testEnv(t);
  const out = spawnSync(process.execPath, [path.join(EXAMPLES, file), ...args], {
    env,
    encoding: 'utf8',
    timeout: 90000,
    killSignal: 'SIGKILL',
  });
  assert.equal(out.status, 0, `${file} exited with ${out.status} (${out.signal}); stderr:\n${out.stderr}\nstdout:\n${out.stdout}`);
  return out.stdout.split('\n').filter((l) => l !== '');
}

test("okanjo-conductor's example: 'Worker N, Job j => the square is j*j' from two workers, then the end", { timeout: 120000 }, (t) => {
  const lines = runExample(t, 'okanjo-conductor/conductor.js');
  const jobs = lines.slice(0, -1).map((line) => {
    const m = /^Worker (\d+), Job (\d+) => the square is (\d+)$/.exec(line);
    assert.ok(m, `an unexpected line: ${line}`);
    assert.equal(Number(m[3]), Number(m[2]) ** 2);
    return { worker: Number(m[1]), job: Number(m[2]) };
  });
  assert.deepEqual(jobs.map((j) => j.job).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual([...new Set(jobs.map((j) => j.worker))].sort(), [1, 2]);
  assert.equal(lines[lines.length - 1], 'All jobs finished processing');
});

test("Distributo's example: batches of 5 in, results handled batch by batch, workers leave when no work is left", { timeout: 120000 }, (t) => {
  const lines = runExample(t, 'distributo/master.js');
  const received = lines.filter((l) => l.startsWith('Results received:'));
  assert.ok(received.length >= 4);
  assert.ok(received.every((l) => l === 'Results received: 5'), received.join('\n'));
  const words = lines.filter((l) => l.startsWith('  ')).map((l) => /^ {2}(\w+): (\d+) vowels \(batch of (\d+), worker (\w+)\)$/.exec(l));
  assert.equal(words.length, 20);
  assert.ok(words.every(Boolean));
  assert.equal(words.find((m) => m[1] === 'banana')[2], '3');
  // Batch tasks: processTasks got more than one task at a time, never more than 5.
  assert.ok(words.some((m) => Number(m[3]) > 1) && words.every((m) => Number(m[3]) <= 5));
  assert.deepEqual([...new Set(words.map((m) => m[4]))].sort(), ['local_1', 'local_2']);
  assert.equal(lines[lines.length - 1], 'All 20 results handled');
});

test("meteor-cluster's example: a task map by type, in-memory tasks first, a log line per start and finish", { timeout: 120000 }, (t) => {
  const store = path.join(tmpdir(t, 'qx-meteor-'), 'tasks.sqlite');
  const lines = runExample(t, 'meteor-cluster/cluster.js', [store]);
  assert.ok(lines.includes('this is a synchrone task'));
  assert.ok(lines.includes('this is an asynchrone task'));
  for (let p = 1; p <= 5; p += 1) assert.ok(lines.includes(`testing memory-${p} at position ${p}`), `memory-${p}`);
  for (let p = 1; p <= 6; p += 1) assert.ok(lines.includes(`testing persistent-${p} at position ${p}`), `persistent-${p}`);
  const log = lines
    .map((l) => /^(\d+):task:(\w+):([\w-]+):(started|finished)$/.exec(l))
    .filter(Boolean)
    .map((m) => ({ at: Number(m[1]), type: m[2], id: m[3], what: m[4] }));
  assert.equal(log.filter((e) => e.what === 'started').length, 13);
  assert.equal(log.filter((e) => e.what === 'finished').length, 13);
  // In-memory tasks are always called first: each started before any persistent one finished.
  const firstPersistentEnd = Math.min(...log.filter((e) => e.what === 'finished' && !e.id.startsWith('memory-')).map((e) => e.at));
  const memoryStarts = log.filter((e) => e.what === 'started' && e.id.startsWith('memory-'));
  assert.equal(memoryStarts.length, 5);
  assert.ok(memoryStarts.every((e) => e.at <= firstPersistentEnd));
  // Among in-memory tasks, higher priority first (8, 8, 8, then 3, then 1). The master hands
  // them out in that order; two workers start the jobs handed out one after the other at about
  // the same time, each on its own clock, so a start may come one place early or late, no more.
  const memoryOrder = [...memoryStarts].sort((a, b) => a.at - b.at).map((e) => e.id);
  const place = (id) => memoryOrder.indexOf(id);
  for (const id of ['memory-1', 'memory-4', 'memory-5']) assert.ok(place(id) <= 3, `${id} (priority 8) in ${memoryOrder}`);
  assert.ok(place('memory-3') >= 2, `memory-3 (priority 3) after two of priority 8 in ${memoryOrder}`);
  assert.ok(place('memory-2') >= 3, `memory-2 (priority 1) after the priority 8 ones in ${memoryOrder}`);
  assert.equal(lines.filter((l) => l.startsWith('done ')).length, 13);
  assert.equal(lines[lines.length - 1], 'no jobs left: the workers closed');
});
