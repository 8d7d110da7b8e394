'use strict';
// queue-xec-worker's Worker on queuexec's core. `new Worker({token, name, loglevel,
// transferEncryptToken})` starts working on its own, as queue-xec's does; plus events, stats(),
// close(), concurrency and batchSize.

const { EventEmitter } = require('node:events');
const path = require('node:path');

const native = require('./native');
const { loadDotenv, resolveTokens, Logger, numberSetting } = require('./env');
const { ConfigError, TaskLoadError, fromNative } = require('./errors');
const { TaskHost } = require('./task-host');

loadDotenv();

const EVENT_BATCH = 256;

/** After a task failed to load: first pause before trying again, and the longest. */
const LOAD_RETRY_FIRST_MS = 5000;
const LOAD_RETRY_MAX_MS = 5 * 60 * 1000;

/** The core's defaults for a worker's concurrency, name and prefetch. */
const DEFAULTS = native.defaults();

class Worker extends EventEmitter {
  /**
   * @param {object} [options] see index.d.ts
   */
  constructor({
    token,
    name = DEFAULTS.name,
    loglevel,
    transferEncryptToken = null,
    concurrency = DEFAULTS.concurrency,
    batchSize,
    sandbox = false,
    master,
    workplace,
    timeout,
    mdns,
    bootstrap,
    upnp,
    maxHeapMb,
  } = {}) {
    super();
    this.log = new Logger(loglevel || process.env.LOG_LEVEL, 'queue-xec-worker');
    native.setLogLevel(this.log.coreLevel, -new Date().getTimezoneOffset());
    const tokens = resolveTokens(token, transferEncryptToken, 'worker', native);
    this.token = tokens.token;
    this.name = name;
    // sandbox: task.js runs in the embedded runtime (no fs, network, env or processes; npm
    // dependencies come from the master's bundle), not in this Node process.
    this.sandbox = Boolean(sandbox);
    const workers = numberSetting(concurrency, DEFAULTS.concurrency);
    if (!Number.isInteger(workers) || workers < 0) {
      throw new ConfigError(`concurrency must be a whole number, got ${JSON.stringify(concurrency)}`, {
        code: 'ERR_QUEUEXEC_CONFIG',
      });
    }
    try {
      native.checkConcurrency(workers); // the core's rule (at least 1), the same in every front end
    } catch (error) {
      throw fromNative(error);
    }
    // queue-xec read getBatch and batchSize (default 5) from the environment: with getBatch set,
    // the master handed out batchSize jobs at a time. Here batchSize is how many jobs wait ready
    // on the worker beyond those running, so the next starts without a round trip.
    const getBatch = Object.prototype.hasOwnProperty.call(process.env, 'getBatch') ? process.env.getBatch : false;
    this.getBatch = getBatch;
    const batched = Boolean(getBatch) && !['false', '0', 'no', 'off'].includes(String(getBatch).toLowerCase());
    const envBatch = numberSetting(process.env.batchSize, 5);
    this.batchSize = Math.max(0, Math.floor(numberSetting(batchSize, batched ? envBatch : DEFAULTS.prefetch)));
    this.concurrency = workers;
    this.workplace = path.resolve(process.cwd(), workplace || '.');

    this._host = new TaskHost(this.log);
    this._closed = false;
    this._options = {
      token: tokens.token,
      transferToken: tokens.transferEncryptToken,
      name: String(name),
      master: master || process.env.QUEUEXEC_MASTER || undefined,
      concurrency: workers,
      prefetch: this.batchSize,
      workplace: this.workplace,
      mdns: mdns === undefined ? undefined : Boolean(mdns),
      // Relays to meet through across NATs; default QUEUEXEC_BOOTSTRAP (also from .env).
      bootstrap: bootstrap === undefined ? undefined : [].concat(bootstrap).map(String),
      upnp: upnp === undefined ? undefined : Boolean(upnp),
      defaultTimeoutMs: timeout === undefined ? undefined : Number(timeout),
      sandbox: this.sandbox,
      maxHeapMb: maxHeapMb === undefined ? undefined : Number(maxHeapMb),
    };
    this._retryMs = LOAD_RETRY_FIRST_MS;
    this._retryTimer = null;
    // Native handles this worker is leaving (after a task that could not load, or a probe).
    this._leaving = new WeakSet();
    this._probe = false;

    /** Resolves with this worker once it is running; rejects with why it could not start. */
    this.ready = this._start().then(
      () => this,
      (error) => {
        const classed = fromNative(error);
        this._report(classed, 'could not start');
        throw classed;
      },
    );
    this.ready.catch(() => {});
  }

  /** Starts a native worker (again, after a task that could not load) and pumps its events. */
  _start() {
    this._starting = this._startNative();
    return this._starting;
  }

  async _startNative() {
    // After a task that could not load, the worker comes back as a probe holding one job at
    // most, so a task still broken costs one job attempt per try, not concurrency + batchSize.
    const options = this._probe ? { ...this._options, concurrency: 1, prefetch: 0 } : this._options;
    const handle = await native.startWorker(
      options,
      (job) => this._host.run(job),
      (info) => this._load(info),
    );
    this._native = handle;
    this.id = handle.peerId;
    this._pump(handle);
    if (this._closed) await handle.close();
    return handle;
  }

  /**
   * The master's assets arrived: load the task. When it cannot load, the worker says so (an
   * 'error' event, a warning at the default level), leaves the master at once, so the jobs it
   * holds go back to the queue for other workers, and comes back after a pause (5 s, doubling
   * up to 5 min) as a probe holding one job at most, to install and load the master's assets as
   * they are then. Answering the core with the failure instead would fail the held jobs and
   * take the next ones, which would fail too: the queue would burn its attempts in a loop.
   */
  async _load(info) {
    const outcome = await this._host.load(info);
    // The core may load before startWorker has resolved: wait for the handle it is loading for.
    const handle = await this._starting.catch(() => null);
    if (!outcome.error) {
      this._retryMs = LOAD_RETRY_FIRST_MS;
      if (this._probe && handle && !this._leaving.has(handle)) {
        // The task loads again: back at full concurrency and batchSize (the probe's one job,
        // if it has one, goes back to the queue).
        this._probe = false;
        this._leaving.add(handle);
        setImmediate(() => this._restart(handle, 0));
      }
      return outcome;
    }
    if (!handle || this._leaving.has(handle)) return outcome;
    this._leaving.add(handle);
    const delay = this._retryMs;
    this._retryMs = Math.min(this._retryMs * 2, LOAD_RETRY_MAX_MS);
    this._probe = true;
    const error = new TaskLoadError(
      `${outcome.error}; this worker takes no jobs and tries again in ${Math.round(delay / 1000)} s ` +
        '(fix the task or its dependencies on the master: workers fetch the changed assets)',
      { code: 'ERR_QUEUEXEC_TASK_LOAD' },
    );
    this.log.notice(error.message);
    if (this.listenerCount('error') > 0) this._emitSafely('error', error);
    // Answered only once the worker has left the master (the core waits for the answer and
    // takes no job meanwhile); by then nobody listens.
    return this._restart(handle, delay).then(() => outcome);
  }

  /** Leaves the master with `handle` and starts again after `delay` ms (unless closed). */
  async _restart(handle, delay) {
    await handle.close().catch(() => {});
    await this._pumpDone;
    if (this._closed) return;
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (this._closed) return;
      this.log.info('trying the master\'s task again');
      this._restarting = this._start().catch((error) => this._report(fromNative(error), 'could not start again'));
    }, delay);
  }

  /** Counts: done, failed, running, connected (the core's names, as in Python). */
  async stats() {
    await this.ready;
    return this._native.stats();
  }

  /** Stops the worker; jobs it was running go back to the master's queue. Safe to call twice. */
  async close() {
    if (this._closing) return this._closing;
    this._closed = true;
    if (this._retryTimer) clearTimeout(this._retryTimer);
    this._closing = (async () => {
      try {
        await this.ready;
      } catch {
        return;
      }
      await this._restarting;
      const handle = this._native;
      await handle.close().catch((error) => {
        throw fromNative(error);
      });
      await this._pumpDone;
    })();
    return this._closing;
  }

  _pump(handle) {
    this._pumpDone = (async () => {
      for (;;) {
        let events;
        try {
          events = await handle.nextEvents(EVENT_BATCH);
        } catch (error) {
          this._report(fromNative(error), 'stopped');
          return;
        }
        if (events.length === 0) return;
        for (const event of events) this._dispatch(event, handle);
      }
    })();
  }

  // The core logs these events itself (same format, same stdout): no second line here.
  _dispatch(event, handle) {
    switch (event.kind) {
      case 'connected':
        this._emitSafely('connected', { master: event.master, path: event.path });
        break;
      case 'disconnected':
        this._emitSafely('disconnected', { reason: event.reason });
        break;
      case 'assetsInstalled':
        this._emitSafely('assetsInstalled', { bundle: event.bundle, fetched: event.fetched });
        break;
      case 'jobFinished': {
        const info = { jobID: event.jobId, error: event.error ?? undefined };
        this._emitSafely('jobFinished', info);
        break;
      }
      case 'refused':
        // The worker has stopped: the master does not accept our token.
        handle.wait().catch((error) => this._report(fromNative(error), 'was refused'));
        break;
      default:
        this.log.debug('event', event);
    }
  }

  _emitSafely(name, ...args) {
    try {
      this.emit(name, ...args);
    } catch (error) {
      console.error('[queue-xec-worker] an event handler threw:', error);
    }
  }

  _report(error, what) {
    if (this.listenerCount('error') > 0) this._emitSafely('error', error);
    else console.error(`[queue-xec-worker] ${what}: ${error.message}`);
  }
}

module.exports = Worker;
module.exports.Worker = Worker;
module.exports.default = Worker;
