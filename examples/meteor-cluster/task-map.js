// meteor-cluster's taskMap: functions by taskType. A job is logged when it starts and finishes
// as `${timestamp}:task:${taskType}:${taskId}`.
const taskMap = {
  TEST: (job, ctx) => console.log(`testing ${ctx.id} at position ${job.position}`),
  SYNC: () => console.log('this is a synchrone task'),
  ASYNC: (job) =>
    new Promise((resolve) =>
      setTimeout(() => {
        console.log('this is an asynchrone task');
        resolve();
      }, job.timeout),
    ),
};

class Cluster {
  async run(job, ctx) {
    console.log(`${Date.now()}:task:${ctx.taskType}:${ctx.id}:started`);
    const value = await taskMap[ctx.taskType](job, ctx);
    // Long enough that two workers' jobs overlap, as on a real cluster.
    await new Promise((resolve) => setTimeout(resolve, 30));
    console.log(`${Date.now()}:task:${ctx.taskType}:${ctx.id}:finished`);
    return value === undefined ? null : value;
  }
}
module.exports = Cluster;
