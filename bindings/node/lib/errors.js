'use strict';
// Error classes. Native errors carry a `code` (ERR_QUEUEXEC_*) and the core's cause chain as
// `cause`; `fromNative` gives them their class without losing either.

class QueuexecError extends Error {
  constructor(message, { code = 'ERR_QUEUEXEC', cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = this.constructor.name;
    this.code = code;
  }
}

/** A room token or transfer token is missing or unusable. */
class TokenError extends QueuexecError {}
/** An option is invalid. */
class ConfigError extends QueuexecError {}
/** A pushed payload cannot be queued. */
class PayloadError extends QueuexecError {}
/** The job store (SQLite file) failed. */
class StoreError extends QueuexecError {}
/** An asset path or an asset's hash was refused. */
class AssetError extends QueuexecError {}
/** A file could not be read or written; `cause` is the OS error. */
class IoError extends QueuexecError {}
/** The network failed, or a peer broke the protocol or could not be opened. */
class NetworkError extends QueuexecError {}
/** The master refused this worker, or the reverse: the tokens differ. */
class UnauthorizedError extends QueuexecError {}
/** Dependencies could not be bundled or installed. */
class DependencyError extends QueuexecError {}
/** A worker could not load the master's task.js (or install its dependencies). */
class TaskLoadError extends QueuexecError {}
/** The master or worker is closed. */
class ClosedError extends QueuexecError {}

/** A job ended with an error: its task threw or rejected, timed out, or its worker was lost too often. */
class JobError extends QueuexecError {
  constructor(message, { jobID, worker, attempts } = {}) {
    super(message, { code: 'ERR_QUEUEXEC_JOB' });
    this.jobID = jobID;
    this.worker = worker;
    this.attempts = attempts;
  }
}

const BY_CODE = {
  ERR_QUEUEXEC_TOKEN: TokenError,
  ERR_QUEUEXEC_CONFIG: ConfigError,
  ERR_QUEUEXEC_PAYLOAD: PayloadError,
  ERR_QUEUEXEC_STORE: StoreError,
  ERR_QUEUEXEC_ASSET: AssetError,
  ERR_QUEUEXEC_IO: IoError,
  ERR_QUEUEXEC_ENVELOPE: NetworkError,
  ERR_QUEUEXEC_NETWORK: NetworkError,
  ERR_QUEUEXEC_UNAUTHORIZED: UnauthorizedError,
  ERR_QUEUEXEC_DEPENDENCIES: DependencyError,
  ERR_QUEUEXEC_CLOSED: ClosedError,
  ERR_QUEUEXEC_TASK_LOAD: TaskLoadError,
};

/**
 * The classed error for an error the addon threw or rejected with; anything else is returned
 * unchanged. Synchronous addon functions set `code`; rejected promises carry it in front of
 * the message (`ERR_QUEUEXEC_STORE: ...`), which is moved back into `code` here.
 */
function fromNative(error) {
  if (!error || typeof error.message !== 'string' || error instanceof QueuexecError) return error;
  let code = typeof error.code === 'string' && error.code.startsWith('ERR_QUEUEXEC') ? error.code : null;
  let { message } = error;
  const prefixed = /^(ERR_QUEUEXEC(?:_[A-Z]+)*): ([\s\S]*)$/.exec(message);
  if (prefixed) {
    [, code, message] = prefixed;
  }
  if (!code) return error;
  const Class = BY_CODE[code] || QueuexecError;
  return new Class(message, { code, cause: error.cause });
}

module.exports = {
  QueuexecError,
  TokenError,
  ConfigError,
  PayloadError,
  StoreError,
  AssetError,
  IoError,
  NetworkError,
  UnauthorizedError,
  DependencyError,
  TaskLoadError,
  ClosedError,
  JobError,
  fromNative,
};
