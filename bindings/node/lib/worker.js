'use strict';
// queue-xec-worker's Worker on queuexec's core. `new Worker({token, name, loglevel,
// transferEncryptToken})` starts working on its own, as queue-xec's does; plus events, stats(),
// close(), concurrency and batchSize.

const { EventEmitter } = require('node:events');
const path = require('node:path');

const native = require('./native');
const { loadDotenv, resolveTokens, Logger, numberSetting } = require('./env');
const { ConfigError, fromNative } = require('./errors');
const { TaskHost } = require('./task-host');

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
    maxHeapMb,
  } = {}) {
    super();
    this.log = new Logger(loglevel || process.env.LOG_LEVEL, 'queue-xec-worker');
    native.setLogLevel(this.log.level);
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
    const options = {
      token: tokens.token,
      transferToken: tokens.transferEncryptToken,
      name: String(name),
      master: master || process.env.QUEUEXEC_MASTER || undefined,
      concurrency: workers,
      prefetch: this.batchSize,
      workplace: this.workplace,
      mdns: mdns === undefined ? undefined : Boolean(mdns),
      defaultTimeoutMs: timeout === undefined ? undefined : Number(timeout),
      sandbox: this.sandbox,
      maxHeapMb: maxHeapMb === undefined ? undefined : Number(maxHeapMb),
    };

    /** Resolves with this worker once it is running; rejects with why it could not start. */
    this.ready = native
      .startWorker(
        options,
        (job) => this._host.run(job),
        (info) => this._host.load(info),
      )
      .then(
        (handle) => {
          this._native = handle;
          this.id = handle.peerId;
          this._pump(handle);
          if (this._closed) return handle.close().then(() => this);
          return this;
        },
        (error) => {
          const classed = fromNative(error);
          this._report(classed, 'could not start');
          throw classed;
        },
      );
    this.ready.catch(() => {});
  }

  /** Counts: done, failed, running, connected. */
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

  _dispatch(event, handle) {
    switch (event.kind) {
      case 'connected':
        this.log.info('joined the master', event.master);
        this._emitSafely('connected', { master: event.master });
        break;
      case 'disconnected':
        this.log.info('left the master:', event.reason);
        this._emitSafely('disconnected', { reason: event.reason });
        break;
      case 'assetsInstalled':
        this.log.info(`assets installed (bundle ${event.bundle.slice(0, 12)}, ${event.fetched} file(s) fetched)`);
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
