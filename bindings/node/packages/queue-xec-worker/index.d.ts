// Types of queue-xec-worker (queuexec). The constructor is queue-xec's; everything else is
// additive.

import { EventEmitter } from 'node:events';

declare namespace Worker {
  type LogLevel = 'off' | 'info' | 'warn' | 'error' | 'debug';

  interface Options {
    /** Room token from the master; default `process.env.token` (also from .env). */
    token?: string | null;
    /** The name the master reports for this worker (default 'no_name'). */
    name?: string;
    /** Default `process.env.LOG_LEVEL`, else 'off'. */
    loglevel?: LogLevel;
    /** Transfer token from the master (32+ characters); default `process.env.transferEncryptToken`. */
    transferEncryptToken?: string | null;
    /** Jobs run at once (default 1). */
    concurrency?: number;
    /** Jobs held ready beyond the running ones (default 1; `batchSize` from the environment when `getBatch` is set). */
    batchSize?: number;
    /** Run task.js in the embedded sandboxed runtime (no fs, network, env, processes) instead of Node. */
    sandbox?: boolean;
    /** Heap limit of each sandboxed runtime in MiB (default 256). */
    maxHeapMb?: number;
    /** The master's multiaddr, for a master on another machine (default: found on this host; env QUEUEXEC_MASTER). */
    master?: string;
    /** The folder worker paths are relative to (default process.cwd(), as in queue-xec). */
    workplace?: string;
    /** Milliseconds a job may run when it sets no timeout of its own. */
    timeout?: number;
    /** Look for the master with mDNS on the local network (default: QUEUEXEC_MDNS, else off). */
    mdns?: boolean;
    /** Relays to find the master through across NATs: multiaddrs ending in /p2p/<id>, as `queuexec
     * relay` prints them (default: QUEUEXEC_BOOTSTRAP, comma separated, also from .env). */
    bootstrap?: string | string[];
    /** Map listening ports on the local router with UPnP (with a bootstrap; default off). */
    upnp?: boolean;
  }

  /** Counts of jobs: the core's names, the same as Python's `WorkerStats`. */
  interface Stats {
    done: number;
    failed: number;
    running: number;
    connected: boolean;
    /** 'direct' or 'relayed' while connected. */
    path?: 'direct' | 'relayed' | null;
    /** Bytes of job traffic that went through relays. */
    relayedBytes: number;
  }

  /** The second argument task.run receives (the first is the pushed payload). */
  interface JobContext {
    /** The job id as the master's queue knows it (a string). */
    id: string;
    attempt: number;
    taskType?: string;
    /** Aborted when the job's timeout passes or the master cancels the job (`master.cancel(id)`). */
    signal: AbortSignal;
    /** The value under `key` in the master's lookup `name` (undefined when absent). */
    lookup(name: string, key: unknown): Promise<unknown>;
    /** Sets `key` to `value` in the master's lookup `name`. */
    setLookup(name: string, key: unknown, value: unknown): Promise<void>;
    /** Sends {cmd, data} to the master's onWorkerMessage; resolves with its reply. */
    request(cmd: string, data?: unknown): Promise<unknown>;
    /** Adds `delta` (default 1) to this worker's custom counter `name` in the master's 'stats'. */
    metric(name: string, delta?: number): boolean;
  }

  /**
   * queue-xec's usual payload, as a task receives it from a queue-xec-master: the payload as
   * pushed (a JSON round trip), so the id keeps its type and other keys stay. A payload of
   * another kind (a number, a string, an array) arrives as itself. From masters of other kinds
   * a task receives `{id, data}`.
   */
  interface Job<T = any> {
    id?: string | number;
    data: T;
    [key: string]: unknown;
  }

  /** What task.js exports: a class with `run`; `job` is the payload as pushed. */
  interface Task {
    run(job: any, context: JobContext): unknown | Promise<unknown>;
  }

  /** Errors thrown or emitted; `code` is ERR_QUEUEXEC_*, one class per code (README: Errors). */
  class QueuexecError extends Error {
    code: string;
  }
  /** ERR_QUEUEXEC_TOKEN */
  class TokenError extends QueuexecError {}
  /** ERR_QUEUEXEC_TOKEN_MISMATCH: this worker's transferEncryptToken differs from the master's. */
  class TokenMismatchError extends QueuexecError {}
  /** ERR_QUEUEXEC_CONFIG */
  class ConfigError extends QueuexecError {}
  /** ERR_QUEUEXEC_UNAUTHORIZED */
  class UnauthorizedError extends QueuexecError {}
  /** ERR_QUEUEXEC_NETWORK */
  class NetworkError extends QueuexecError {}
  /**
   * task.js could not be loaded (or its dependencies installed): the worker leaves the master
   * (its jobs go back to the queue) and tries again later (5 s, doubling up to 5 min) holding
   * one job at most until the task loads.
   */
  class TaskLoadError extends QueuexecError {}

  const errors: {
    QueuexecError: typeof QueuexecError;
    TokenError: typeof TokenError;
    TokenMismatchError: typeof TokenMismatchError;
    ConfigError: typeof ConfigError;
    UnauthorizedError: typeof UnauthorizedError;
    NetworkError: typeof NetworkError;
    TaskLoadError: typeof TaskLoadError;
  };
}

interface WorkerEvents {
  /** `path`: 'direct' (also through hole-punched NATs) or 'relayed' (through a relay). */
  connected: [info: { master: string; path: 'direct' | 'relayed' }];
  disconnected: [info: { reason: string }];
  assetsInstalled: [info: { bundle: string; fetched: number }];
  jobFinished: [info: { jobID: string; error?: string }];
  /** The master cancelled a job this worker was running; its task's `signal` aborted. */
  jobCancelled: [info: { jobID: string }];
  /** A message from the master's sendMessageToWorker or broadcast. */
  message: [msg: { cmd: string; data: unknown }];
  /** The master aborted: this worker stopped. */
  aborted: [];
  /** With `exitWhenDrained`: the master had no more jobs, and this worker stopped. */
  drained: [];
  error: [error: Worker.QueuexecError];
}

declare class Worker extends EventEmitter {
  /** Starts working at once. Throws a TokenError when a token is missing or too short. */
  constructor(options?: Worker.Options);

  /** Resolves once the worker runs; rejects with why it could not start. */
  readonly ready: Promise<Worker>;
  /** The worker's peer id (the `worker.id` the master reports), once ready. */
  id?: string;
  name: string;
  concurrency: number;
  batchSize: number;

  stats(): Promise<Worker.Stats>;
  /** The value under `key` in the master's lookup `name` (undefined when absent). */
  lookup(name: string, key: unknown): Promise<unknown>;
  /** Sets `key` to `value` in the master's lookup `name`. */
  setLookup(name: string, key: unknown, value: unknown): Promise<void>;
  /** Sends {cmd, data} to the master's onWorkerMessage; resolves with its reply. */
  request(cmd: string, data?: unknown): Promise<unknown>;
  /** okanjo-conductor's name for `request`. */
  sendRequestToMaster(cmd: string, data?: unknown): Promise<unknown>;
  /** Called with each {cmd, data} message from the master (also the 'message' event). */
  onMasterMessage?: (msg: { cmd: string; data: unknown }) => unknown;
  /** Stops; jobs it held go back to the master's queue. */
  close(): Promise<void>;

  on<K extends keyof WorkerEvents>(event: K, listener: (...args: WorkerEvents[K]) => void): this;
  once<K extends keyof WorkerEvents>(event: K, listener: (...args: WorkerEvents[K]) => void): this;
  off<K extends keyof WorkerEvents>(event: K, listener: (...args: WorkerEvents[K]) => void): this;
  addListener<K extends keyof WorkerEvents>(event: K, listener: (...args: WorkerEvents[K]) => void): this;
  emit<K extends keyof WorkerEvents>(event: K, ...args: WorkerEvents[K]): boolean;
}

export = Worker;
