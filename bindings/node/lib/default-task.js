// The task.js a master ships when its execAssets name none. Replace it with your own: a class
// whose async run(job) returns the result (anything JSON can carry).
// `job` is {id, data}: with queue-xec's usual payload {id, data: JSON.stringify(...)},
// JSON.parse(job.data) gives the data back.

class Task {
  constructor() {
    this.data = null;
  }

  async run(job) {
    this.data = job.data;
    // Echo the job back, so a master without its own task still sees work done.
    return { echo: job };
  }
}

module.exports = Task;
