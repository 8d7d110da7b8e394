'use strict';
// A master's local worker processes (okanjo-conductor's `workerLimit`, meteor-cluster's pool
// sized to the cores): `new Master({localWorkers: N})` starts N Node processes running
// queue-xec-worker against this master, starts a new one when one crashes (an 'error' of type
// 'worker_crash' with its worker id, exit code and signal, and a 'workerExit' event), and stops
// them on close(). With `exitWhenDrained` they leave once the master has no more jobs, and are
// not started again.

const { fork } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const { ConfigError, QueuexecError } = require('./errors');

const ENTRY = path.join(__dirname, 'local-worker.js');
/** First pause before starting a crashed worker again, doubling up to the longest. */
const RESPAWN_FIRST_MS = 100;
const RESPAWN_MAX_MS = 5000;
/** How long close() waits for a worker to leave after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 5000;

/** A local worker process that ended other than by close() or exitWhenDrained. */
class WorkerCrashError extends QueuexecError {
  constructor({ workerId, pid, code, signal }) {
    super(`local worker ${workerId} (pid ${pid}) crashed: ${signal ? `signal ${signal}` : `exit code ${code}`}; starting another`, {
      code: 'ERR_QUEUEXEC_WORKER_CRASH',
    });
    this.type = 'worker_crash';
    this.workerId = workerId;
    this.pid = pid;
    this.exitCode = code;
    this.signal = signal;
  }
}

/** The number of local workers `option` asks for: N, or true for min(cores, 4). */
function localWorkerCount(option) {
  if (option === undefined || option === null || option === false || option === 0) return 0;
  const n = option === true ? Math.min(os.availableParallelism ? os.availableParallelism() : os.cpus().length, 4) : Number(option);
  if (!Number.isInteger(n) || n < 0 || n > 256) {
    throw new ConfigError(`localWorkers must be a whole number from 0 to 256, or true (min(cores, 4)); got ${JSON.stringify(option)}`, {
      code: 'ERR_QUEUEXEC_CONFIG',
    });
  }
  return n;
}

class LocalPool {
  /**
   * @param {import('node:events').EventEmitter} master emits 'workerExit' and 'error'
   * @param {object} options count, token, transferEncryptToken, exitWhenDrained, worker (more Worker options)
   */
  constructor(master, { count, token, transferEncryptToken, exitWhenDrained = false, worker = {} }) {
    this.master = master;
    this.count = count;
    this.config = { token, transferEncryptToken, exitWhenDrained: Boolean(exitWhenDrained), ...worker };
    this.children = new Map(); // workerId -> child
    this.nextId = 1;
    this.closing = false;
    this.respawnMs = RESPAWN_FIRST_MS;
    this.done = 0; // left because the master ran dry
  }

  /** Starts the processes; `masterAddr` is one of the master's listen addresses. */
  start(masterAddr) {
    this.masterAddr = masterAddr;
    for (let slot = 0; slot < this.count; slot += 1) this._spawn(slot);
  }

  _spawn(slot) {
    if (this.closing) return;
    const workerId = this.nextId;
    this.nextId += 1;
    const config = { ...this.config, master: this.masterAddr, name: this.config.name || `local_${slot + 1}` };
    const child = fork(ENTRY, [], {
      // QUEUEXEC_WORKER_ID: okanjo-conductor's worker id (1, 2, ...; a restarted one gets a new one).
      env: { ...process.env, QUEUEXEC_LOCAL_WORKER: JSON.stringify(config), QUEUEXEC_WORKER_ID: String(workerId) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.workerId = workerId;
    child.slot = slot;
    this.children.set(workerId, child);
    child.once('exit', (code, signal) => this._exited(child, code, signal));
    child.once('error', (error) => this.master._report(error));
  }

  _exited(child, code, signal) {
    this.children.delete(child.workerId);
    const info = { id: child.workerId, pid: child.pid, code, signal };
    this.master._emitSafely('workerExit', info);
    if (this.closing) return;
    if (code === 0 && !signal) {
      // exitWhenDrained (or the master aborted): not started again.
      this.done += 1;
      return;
    }
    this.master._report(new WorkerCrashError({ workerId: child.workerId, pid: child.pid, code, signal }));
    const delay = this.respawnMs;
    this.respawnMs = Math.min(this.respawnMs * 2, RESPAWN_MAX_MS);
    const timer = setTimeout(() => this._spawn(child.slot), delay);
    timer.unref();
  }

  /** The running processes' pids, by worker id. */
  pids() {
    return Object.fromEntries([...this.children].map(([id, child]) => [id, child.pid]));
  }

  /** Stops every process (SIGTERM, then SIGKILL after a grace period). */
  async close() {
    this.closing = true;
    const waits = [...this.children.values()].map(
      (child) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    );
    await Promise.all(waits);
  }
}

module.exports = { LocalPool, WorkerCrashError, localWorkerCount };
