// Type-checked by `npm test` (tsc --noEmit).
import Worker = require('queue-xec-worker');

const worker = new Worker({ token: process.env.token, name: 'worker_1', loglevel: 'info', concurrency: 2, batchSize: 4 });
worker.on('jobFinished', ({ jobID, error }) => console.log(jobID, error ?? 'ok'));
worker.on('error', (e) => console.error(e.code, e.message));

const task: Worker.Task = {
  async run(job: Worker.Job<string>, ctx: Worker.JobContext) {
    if (ctx.signal.aborted) throw new Error('late');
    return JSON.parse(job.data);
  },
};
void task;

setTimeout(async () => {
  const stats: Worker.Stats = await worker.stats();
  console.log(stats.done, stats.connected);
  await worker.close();
}, 1000);
