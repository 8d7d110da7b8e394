'use strict';
// okanjo-conductor's README example on queuexec: a conductor with two local worker processes
// (workerLimit: 2) squares the numbers 0..9 and says when everything is done.
//
//   node examples/okanjo-conductor/conductor.js
//
// okanjo-conductor                      queuexec
//   new Conductor({workerLimit: 2})       new Master({localWorkers: 2})
//   conductor.generateJobs / jobsQueue    getTasks(n) (here: the ten numbers, then nothing)
//   ConductorWorker.processJob(job)       task.js run(job, ctx)
//   conductor.on('error' | 'end')         master.on('error' | 'end')
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const Master = require('queue-xec-master');

process.chdir(__dirname);
let generated = false;
const conductor = new Master({
  localWorkers: 2, // at most keep 2 workers alive
  exitWhenDrained: true, // "this process will terminate when there are no more jobs to process"
  execAssets: { files: [{ masterPath: path.join(__dirname, 'task.js'), name: 'task.js', workerPath: 'task.js' }] },
  // Where the workers install the master's task.js (not over this folder's own copy).
  workerOptions: { workplace: fs.mkdtempSync(path.join(os.tmpdir(), 'okanjo-workers-')) },
  watchAssets: false,
  loglevel: 'off',
  // The tokens of .env or the environment; for a quick try, fresh random ones.
  token: process.env.token || crypto.randomBytes(16).toString('hex'),
  transferEncryptToken: process.env.transferEncryptToken || crypto.randomBytes(24).toString('hex'),
  // generateJobs: jobs are queued as numbers, but you could queue anything.
  getTasks: () => {
    if (generated) return [];
    generated = true;
    return Array.from({ length: 10 }, (_, i) => i);
  },
});

conductor.on('error', (err) => {
  console.error('Handle your big bad errors here', err);
});

conductor.once('end', () => {
  console.log('All jobs finished processing');
  conductor.close().then(() => process.exit(0));
});
