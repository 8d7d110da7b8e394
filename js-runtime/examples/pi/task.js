// A queue-xec task: a Monte Carlo estimate of pi.
//
// The master pushes jobs whose data is `{"samples": N}` (as an object, or as the JSON string of
// one, the way queue-xec masters usually push data); each job throws N random points at the unit
// square and counts those inside the quarter circle. Adding up `inside` and `samples` over all
// results gives a better estimate: pi ~ 4 * inside / samples.
class Task {
  async run(job) {
    const input = typeof job.data === "string" ? JSON.parse(job.data) : job.data || {};
    const samples = Math.max(1, Math.floor(Number(input.samples) || 1000000));
    let inside = 0;
    for (let i = 0; i < samples; i++) {
      const x = Math.random();
      const y = Math.random();
      if (x * x + y * y <= 1) inside++;
    }
    return { samples, inside, pi: (4 * inside) / samples };
  }
}

module.exports = Task;
