// Type-checked by `npm test` (tsc --noEmit): the queue-xec example, typed, plus the additions.
import Master = require('queue-xec-master');

async function run(): Promise<void> {
  const mm = new Master({
    onResults: (result) => {
      if (result.error !== undefined) console.error(result.jobID, result.error);
      else console.dir(result.data);
    },
    execAssets: {
      dependencies: ['big.js', 'moment'],
      files: [{ masterPath: '/src/task.js', name: 'task.js', workerPath: '/workplace/task.js' }],
    },
    loglevel: 'warn',
    storePath: 'jobs.sqlite',
  });
  mm.on('result', ({ jobID, worker, data }) => console.log(jobID, worker.name, data));
  mm.on('error', (error) => console.error(error.code, error.message));
  mm.on('workerJoined', (worker) => console.log('joined', worker.id));
  mm.on('drained', () => console.log('all done'));

  const dummy = { x: 1, y: 2 };
  for (let i = 0; i < 5; i++) {
    const receipt: Master.PushReceipt = await mm.pushNewJob({ id: i, data: JSON.stringify(dummy) });
    console.log(receipt.id, receipt.duplicate, receipt.repeated);
  }
  await mm.pushNewJob([1, 2, 3], { priority: 5, retries: 2, timeout: 10_000, delay: 500 });
  await mm.pushNewJobs(['a', 'b', 42]);
  const stats: Master.Stats = await mm.stats();
  console.log(stats.queued + stats.running);
  await mm.close();
}

run().catch((e: unknown) => {
  if (e instanceof Master.errors.TokenError) console.error('run --setup first:', e.message);
});
