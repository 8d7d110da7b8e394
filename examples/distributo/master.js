'use strict';
// Distributo's README example on queuexec: a task distributor hands words to two worker
// processes in batches of 5; each worker processes a batch at once (processTasks) and leaves
// when no work is left; the master handles the results as they come back, batch by batch.
//
//   node examples/distributo/master.js
//
// Distributo                              queuexec
//   new TaskDistributor({batchSize, getTasks, handleResults})   new Master({batchSize, getTasks, handleResults})
//   new WorkerClient({processTasks})       task.js processTasks(tasks) (a batch task)
//   masterUrl / Bonjour discovery          the worker option `master` / same-host discovery (mDNS opt-in)
//   workers exit when no tasks are left    exitWhenDrained
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const Master = require('queue-xec-master');

process.chdir(__dirname);

const WORDS = ['apple', 'banana', 'cherry', 'damson', 'elderberry', 'fig', 'grape', 'honeydew', 'kiwi', 'lemon', 'mango', 'nectarine', 'orange', 'papaya', 'quince', 'raspberry', 'strawberry', 'tangerine', 'ugli', 'watermelon'];

let handed = false;
function getMyTasks() {
  // Handed out once; an empty list means there is no more.
  if (handed) return [];
  handed = true;
  return WORDS.map((word) => ({ word }));
}

let received = 0;
function handleMyResults(results) {
  // Handle the processed results (e.g., save to DB, write to file)
  received += results.length;
  console.log('Results received:', results.length);
  for (const r of results) console.log(`  ${r.data.word}: ${r.data.syllableData.vowels} vowels (batch of ${r.data.syllableData.batch}, worker ${r.worker.name})`);
}

const distributor = new Master({
  batchSize: 5, // Number of tasks to send per batch
  getTasks: getMyTasks,
  handleResults: handleMyResults,
  localWorkers: 2,
  exitWhenDrained: true,
  // Where the workers install the master's task.js (a folder of their own).
  workerOptions: { concurrency: 5, batchSize: 0, workplace: fs.mkdtempSync(path.join(os.tmpdir(), 'distributo-workers-')) },
  execAssets: { files: [{ masterPath: path.join(__dirname, 'worker-task.js'), name: 'task.js', workerPath: 'task.js' }] },
  watchAssets: false,
  loglevel: 'off',
  // The tokens of .env or the environment; for a quick try, fresh random ones.
  token: process.env.token || crypto.randomBytes(16).toString('hex'),
  transferEncryptToken: process.env.transferEncryptToken || crypto.randomBytes(24).toString('hex'),
});

distributor.once('end', () => {
  console.log(`All ${received} results handled`);
  distributor.close().then(() => process.exit(0));
});
