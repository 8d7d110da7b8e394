'use strict';
// A master written against queue-xec-master's original API, for tests/netns-nat.sh (3e): it
// runs behind NAT A with nothing but a .env in its working directory (token,
// transferEncryptToken, QUEUEXEC_BOOTSTRAP), pushes N jobs with pushNewJob and prints
// `node-master: N results` once every job's result has arrived exactly once. A repeated or
// unknown result is an error (exit 1).
//
//   node master.js N      (in the app directory holding .env and task.js)
const Master = require('queue-xec-master');

const total = Number(process.argv[2] || 200);
const seen = new Set();
const byWorker = {};

function resultCollect(result) {
  const id = result.jobID;
  if (typeof id !== 'number' || id < 0 || id >= total) {
    console.error(`node-master: a result for an unknown job: ${JSON.stringify(result)}`);
    process.exit(1);
  }
  if (seen.has(id)) {
    console.error(`node-master: job ${id}'s result arrived twice`);
    process.exit(1);
  }
  const data = typeof result.data === 'string' ? JSON.parse(result.data) : result.data;
  if (!data || data.double !== id * 2) {
    console.error(`node-master: job ${id}'s result is wrong: ${JSON.stringify(result)}`);
    process.exit(1);
  }
  seen.add(id);
  const name = (result.worker && result.worker.name) || '?';
  byWorker[name] = (byWorker[name] || 0) + 1;
  if (seen.size === total) {
    console.log(`node-master: ${total} results ${JSON.stringify(byWorker)}`);
    process.exit(0);
  }
}

async function run() {
  const mm = new Master({
    onResults: resultCollect,
    execAssets: {
      dependencies: [],
      files: [{ masterPath: '/task.js', name: 'task.js', workerPath: '/workplace/task.js' }],
    },
  });
  for (let i = 0; i < total; i += 1) {
    await mm.pushNewJob({ id: i, data: JSON.stringify({ x: i }) });
  }
  console.log(`node-master: ${total} jobs pushed`);
}
run().catch((e) => {
  console.error(`node-master: ${e.stack || e}`);
  process.exit(1);
});
