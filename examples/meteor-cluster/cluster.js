'use strict';
// meteor-cluster's README example ("basic usage") on queuexec: a task map by type, in-memory
// tasks beside persistent ones (in-memory always first, whatever the priority), a pool of two
// worker processes that closes when no jobs are left, and a log line per job start/finish in
// meteor-cluster's format `${timestamp}:task:${taskType}:${taskId}`.
//
//   node examples/meteor-cluster/cluster.js [store.sqlite]
//
// meteor-cluster                                   queuexec
//   TaskQueue.addTask({taskType, data, priority, _id, inMemory})   pushNewJob(data, {taskType, priority, id, inMemory})
//   persistent queue (MongoDB)                      storePath (SQLite)
//   TaskQueue.addEventListener('done' | 'error', ({value, task}) => ...)   master.on('result' | 'error')
//   new Cluster(taskMap, {maxAvailableWorkers})      task.js maps taskType to functions; localWorkers
//   closes the workers when no jobs are available   exitWhenDrained
const fs = require('node:fs');
const os = require('node:os');
const crypto = require('node:crypto');
const path = require('node:path');
const Master = require('queue-xec-master');

process.chdir(__dirname);
const store = process.argv[2] || path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'meteor-cluster-')), 'tasks.sqlite');
const cluster = new Master({
  storePath: store,
  localWorkers: 2,
  exitWhenDrained: true,
  // Where the workers install the master's task.js (a folder of their own).
  workerOptions: { concurrency: 1, batchSize: 0, workplace: fs.mkdtempSync(path.join(os.tmpdir(), 'meteor-workers-')) },
  execAssets: { files: [{ masterPath: path.join(__dirname, 'task-map.js'), name: 'task.js', workerPath: 'task.js' }] },
  watchAssets: false,
  loglevel: 'off',
  // The tokens of .env or the environment; for a quick try, fresh random ones.
  token: process.env.token || crypto.randomBytes(16).toString('hex'),
  transferEncryptToken: process.env.transferEncryptToken || crypto.randomBytes(24).toString('hex'),
});

// meteor-cluster calls one listener per event type with {value, task}.
cluster.on('result', (result, meta) => done({ value: result.data, task: { _id: meta.id, worker: result.worker.name } }));
cluster.on('error', (error) => console.log(`error: ${error.message}`));
function done({ value, task }) {
  console.log(`done ${task._id} -> ${JSON.stringify(value)}`);
}

let count = 0;
const addTask = ({ taskType, data, priority = 1, _id, inMemory = false }) => {
  count += 1;
  return cluster.pushNewJob(data, { taskType, priority, inMemory, id: _id || `${taskType}-${count}` });
};
const inMemoryTask = (priority, position) => addTask({ taskType: 'TEST', priority, data: { position }, inMemory: true, _id: `memory-${position}` });
const persistentTask = (priority, position) => addTask({ taskType: 'TEST', priority, data: { position }, inMemory: false, _id: `persistent-${position}` });

(async () => {
  await cluster.ready;
  // Added in one go, as meteor-cluster's addTask calls are: the jobs made in one tick reach the
  // queue as one push, so the workers see them all and take the in-memory ones by priority.
  await Promise.all([
    addTask({ taskType: 'SYNC', data: {} }),
    addTask({ taskType: 'ASYNC', data: { timeout: 500 }, priority: 6 }),
    inMemoryTask(8, 1),
    inMemoryTask(1, 2),
    inMemoryTask(3, 3),
    inMemoryTask(8, 4),
    inMemoryTask(8, 5),
    persistentTask(8, 1),
    persistentTask(1, 2),
    persistentTask(3, 3),
    persistentTask(8, 4),
    persistentTask(8, 5),
    persistentTask(8, 6),
  ]);
})();

let exited = 0;
cluster.on('workerExit', async ({ code }) => {
  // The pool closes its workers when no jobs are left.
  if (code === 0) exited += 1;
  if (exited === 2) {
    console.log('no jobs left: the workers closed');
    await cluster.close();
    process.exit(0);
  }
});
