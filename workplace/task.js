// The task of the seeds tests (cancel, producers, lookups): queue-xec's contract (class, async
// run(job, ctx), job.data a JSON string) with switches.
const fs = require('node:fs');
const path = require('node:path');

function mark(name, text = '') {
  if (process.env.QX_MARK_DIR) fs.writeFileSync(path.join(process.env.QX_MARK_DIR, name), text);
}

class Task {
  async run(job, ctx) {
    const data = typeof job.data === 'string' ? JSON.parse(job.data) : job.data || {};
    if (process.env.QX_MARK_DIR && !data.crashOnce) mark(`started-${ctx.id}`, String(process.pid));
    if (data.hang) {
      // Runs until the master cancels it: the signal aborts.
      const reason = await new Promise((resolve) => {
        if (ctx.signal.aborted) resolve(ctx.signal.reason);
        ctx.signal.addEventListener('abort', () => resolve(ctx.signal.reason));
      });
      mark(`aborted-${ctx.id}`, reason && reason.message);
      throw reason;
    }
    if (data.lookups) {
      // Reads and writes lookups held by the master, and asks its onWorkerMessage.
      const fruit = await ctx.lookup('fruits', data.fruit);
      const veggie = await ctx.lookup('veggies', data.veggie);
      await ctx.setLookup('seen', String(data.n), { by: process.pid, fruit });
      const back = await ctx.lookup('seen', String(data.n));
      const reply = await ctx.request('double', { n: data.n });
      let refused = null;
      try {
        await ctx.request('explode', {});
      } catch (error) {
        refused = error.message;
      }
      return { n: data.n, fruit, veggie, back, reply, refused, missing: await ctx.lookup('fruits', 'zzz') };
    }
    if (data.crashOnce && process.env.QX_MARK_DIR) {
      // The first worker to get this job dies holding it (a crash the pool restarts from).
      const marker = path.join(process.env.QX_MARK_DIR, `crashed-${ctx.id}`);
      if (!fs.existsSync(marker)) {
        mark(`crashed-${ctx.id}`, String(process.pid));
        process.kill(process.pid, 'SIGKILL');
      }
    }
    if (data.metric) ctx.metric('pages', data.metric);
    if (data.sleep) await new Promise((r) => setTimeout(r, data.sleep));
    return { n: data.n, square: data.n * data.n, pid: process.pid };
  }
}
module.exports = Task;
