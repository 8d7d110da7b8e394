'use strict';
// A worker written against queue-xec-worker's original API, for tests/netns-nat.sh (3e): the
// tokens and QUEUEXEC_BOOTSTRAP come from the .env in its working directory only. It prints
// each 'connected' event's path (`node-worker: connected direct`) and runs until SIGINT or
// SIGTERM.
//
//   node worker.js NAME      (in a directory holding .env)
const Worker = require('queue-xec-worker');

const work1 = new Worker({ name: process.argv[2] || 'worker_1', loglevel: process.env.LOG_LEVEL });
work1.on('connected', ({ path }) => console.log(`node-worker: connected ${path}`));
function stop() {
  work1.close().then(() => process.exit(0), () => process.exit(1));
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
