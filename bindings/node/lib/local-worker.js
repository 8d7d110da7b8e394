'use strict';
// The entry of a master's local worker process (see local-pool.js): a queue-xec-worker
// configured by the master through QUEUEXEC_LOCAL_WORKER (JSON), which leaves with exit code 0
// when the master ran dry (exitWhenDrained), aborted, or sent SIGTERM.

const Worker = require('./worker');

const config = JSON.parse(process.env.QUEUEXEC_LOCAL_WORKER || '{}');
delete process.env.QUEUEXEC_LOCAL_WORKER;
const worker = new Worker(config);
let leaving = false;
function leave() {
  if (leaving) return;
  leaving = true;
  worker.close().then(
    () => process.exit(0),
    () => process.exit(0),
  );
}
worker.on('drained', leave);
worker.on('aborted', leave);
worker.on('error', (error) => {
  // A task that cannot load is retried by the worker itself; other errors are reported.
  console.error(`[queuexec local worker ${process.pid}] ${error.message}`);
});
process.on('SIGTERM', leave);
process.on('SIGINT', leave);
// The master went away (its process ended): leave too.
process.on('disconnect', leave);
