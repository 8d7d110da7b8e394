'use strict';
// How a Node worker's jobs reach its task: in batches. One `nextJobs` promise is pending at a
// time and resolves with every job the core has queued meanwhile (one wake-up of this thread
// per batch, not one call per job); each job runs through the task host as before, and the
// outcomes of the jobs that finished in the same turn go back in one `finishJobs` call.

/** Most jobs taken per crossing. */
const JOB_BATCH = 1024;

/**
 * Runs the jobs of native worker `handle` with `run(job) -> Promise<{result}|{error}>` (which
 * never rejects) until the worker stops. Resolves then; rejects only if the addon fails.
 */
async function serveJobs(handle, run) {
  // The outcomes of the jobs that finished in this turn, as finishJobs takes them: numbers,
  // whether each failed, and each one's JSON text or error.
  let seqs = [];
  let failed = [];
  let texts = [];
  let flushing = false;
  const flush = () => {
    flushing = false;
    const s = seqs;
    const f = failed;
    const x = texts;
    seqs = [];
    failed = [];
    texts = [];
    handle.finishJobs(s, f, x);
  };
  const finished = (seq, outcome) => {
    seqs.push(seq);
    if (outcome.error === undefined) {
      failed.push(false);
      texts.push(outcome.result === undefined ? 'null' : outcome.result);
    } else {
      failed.push(true);
      texts.push(String(outcome.error));
    }
    if (!flushing) {
      flushing = true;
      // After the other jobs that finish in this turn: they go back together.
      queueMicrotask(flush);
    }
  };
  for (;;) {
    // One JSON text per batch (see src/delivery.rs): V8's parser makes the job objects. Long
    // data rides beside it as its own string.
    const batch = await handle.nextJobs(JOB_BATCH);
    const jobs = JSON.parse(batch.json);
    const n = jobs.length;
    if (n === 0) return;
    for (let i = 0; i < n; i += 1) {
      const job = jobs[i];
      if (job.dataText !== undefined) job.dataText = batch.texts[job.dataText];
      run(job).then(
        (outcome) => finished(job.seq, outcome),
        (error) => finished(job.seq, { error: String((error && error.message) || error) }),
      );
    }
  }
}

module.exports = { serveJobs, JOB_BATCH };
