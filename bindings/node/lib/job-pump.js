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
  let seqs = [];
  let outcomes = [];
  let flushing = false;
  const flush = () => {
    flushing = false;
    const s = seqs;
    const o = outcomes;
    seqs = [];
    outcomes = [];
    handle.finishJobs(s, o);
  };
  const finished = (seq, outcome) => {
    seqs.push(seq);
    outcomes.push(outcome);
    if (!flushing) {
      flushing = true;
      // After the other jobs that finish in this turn: they go back together.
      queueMicrotask(flush);
    }
  };
  for (;;) {
    const batch = await handle.nextJobs(JOB_BATCH);
    const n = batch.seqs.length;
    if (n === 0) return;
    for (let i = 0; i < n; i += 1) {
      const seq = batch.seqs[i];
      run(batch.jobs[i]).then(
        (outcome) => finished(seq, outcome),
        (error) => finished(seq, { error: String((error && error.message) || error) }),
      );
    }
  }
}

module.exports = { serveJobs, JOB_BATCH };
