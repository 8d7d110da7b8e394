'use strict';
// The task the Node master of tests/netns-nat.sh ships to its workers (queue-xec's contract:
// a class with async run(job), job = { id, data }).
class Task {
  async run(job) {
    const { x } = JSON.parse(job.data);
    // 20 ms of "work", so that both workers get a share.
    await new Promise((resolve) => setTimeout(resolve, 20));
    return { id: job.id, double: x * 2 };
  }
}

module.exports = Task;
