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
const { serveJobs } = require('./job-pump');

loadDotenv();

const EVENT_BATCH = 256;

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
    statsInterval,
    exitWhenDrained = false,
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
      statsIntervalMs: statsInterval === undefined ? undefined : Number(statsInterval),
      exitWhenDrained: Boolean(exitWhenDrained),
    };

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

  /** Starts the native worker and pumps its events. */
  _start() {
    this._starting = this._startNative();
    return this._starting;
  }

  async _startNative() {
    const handle = await native.startWorker(this._options, (info) => this._load(info));
    this._native = handle;
    this.id = handle.peerId;
    this._host.link = handle;
    this._pump(handle);
    serveJobs(handle, (job) => this._host.run(job)).catch((error) => this._report(fromNative(error), 'stopped running jobs'));
    if (this._closed) await handle.close();
    return handle;
  }

  /**
   * The master's assets arrived: load the task. When it cannot load, the worker says so (an
   * 'error' event, a warning at the default level) and answers the core with the failure: the
   * core gives the jobs it holds back to the master unrun (they use no attempt; the master's
   * user gets an 'error' event naming this worker), and the master sends this worker no jobs
   * until its assets change (or, after a pause, to try again). Then the core fetches the
   * changed assets and calls this again.
   */
  async _load(info) {
    const outcome = await this._host.load(info);
    if (!outcome.error) return outcome;
    const error = new TaskLoadError(
      `${outcome.error}; this worker takes no jobs and tries again when the master's assets change ` +
        '(fix the task or its dependencies on the master: workers fetch the changed assets)',
      { code: 'ERR_QUEUEXEC_TASK_LOAD' },
    );
    this.log.notice(error.message);
    if (this.listenerCount('error') > 0) this._emitSafely('error', error);
    return outcome;
  }

  /** Adds `delta` (default 1) to this worker's custom metric `name`, reported in the master's 'stats'. */
  metric(name, delta = 1) {
    return this._host.metric(name, delta);
  }

  /** The value under `key` in the master's lookup `name` (undefined when absent there). */
  lookup(name, key) {
    return this._host.call('lookup', name, key);
  }

  /** Sets `key` to `value` in the master's lookup `name`. */
  setLookup(name, key, value) {
    return this._host.call('setLookup', name, key, value);
  }

  /**
   * Sends `{cmd, data}` to the master's onWorkerMessage; resolves with what it returns (rejects
   * with its error). okanjo-conductor's `sendRequestToMaster(cmd, data)`.
   */
  request(cmd, data) {
    return this._host.call('message', cmd, undefined, data);
  }

  sendRequestToMaster(cmd, data) {
    return this.request(cmd, data);
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
    this._closing = (async () => {
      try {
        await this.ready;
      } catch {
        return;
      }
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
      case 'message': {
        // From the master's sendMessageToWorker / broadcast.
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          data = event.data;
        }
        const msg = { cmd: event.cmd, data };
        if (typeof this.onMasterMessage === 'function') {
          try {
            const out = this.onMasterMessage(msg);
            if (out && typeof out.catch === 'function') out.catch((error) => this._report(error, 'onMasterMessage failed'));
          } catch (error) {
            this._report(error, 'onMasterMessage failed');
          }
        }
        this._emitSafely('message', msg);
        break;
      }
      case 'drained':
        // exitWhenDrained: the master has no more jobs and this worker has stopped.
        this._closed = true;
        this._emitSafely('drained');
        break;
      case 'aborted':
        // The master aborted: this worker has stopped.
        this._closed = true;
        this._emitSafely('aborted');
        break;
      case 'jobCancelled':
        // The master cancelled it: the task's signal aborts.
        this._host.cancel(event.jobId);
        this._emitSafely('jobCancelled', { jobID: event.jobId });
        break;
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
