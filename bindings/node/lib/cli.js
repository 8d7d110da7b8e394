'use strict';
// The `queue-xec-worker` and `queue-xec-master` commands (npx queue-xec-worker, ...).
//   queue-xec-worker            a worker from ./.env, as queue-xec's `node worker.js`
//   queue-xec-master            a master from ./queue-xec.config.js (or --config FILE) and ./.env
//   ... --setup                 writes token and transferEncryptToken to ./.env (see setup.js)
// Both run until SIGINT or SIGTERM, then close cleanly (jobs held go back to the queue).

const fs = require('node:fs');
const path = require('node:path');

const setup = require('./setup');

const CONFIG_NAMES = ['queue-xec.config.js', 'queue-xec.config.cjs', 'queue-xec.config.json'];

const USAGE = {
  worker: `Usage: queue-xec-worker [--name NAME] [--concurrency N] [--sandbox] [--master MULTIADDR] [--loglevel LEVEL]
       queue-xec-worker --setup [--force] [--token T] [--transfer-encrypt-token T] [--env-file .env]

Without --setup: runs a worker with the tokens in ./.env (or the environment: token,
transferEncryptToken, LOG_LEVEL), as queue-xec's \`node worker.js\` did, until Ctrl-C.
--setup asks for the master's tokens on a terminal; elsewhere pass them as flags.`,
  master: `Usage: queue-xec-master [--config FILE] [--exit-when-drained] [--loglevel LEVEL]
       queue-xec-master --setup [--force] [--token T] [--transfer-encrypt-token T] [--env-file .env]

Without --setup: runs a master with the tokens in ./.env and the options exported by
./queue-xec.config.js (or .cjs, .json; or --config FILE): the Master constructor's options
(execAssets, storePath, listen, ...) plus \`jobs\`, payloads to push (an array, or a function
returning one or a promise of one). Each result is printed as a JSON line on stdout.
--setup writes new tokens to ./.env (asks first on a terminal).`,
};

function readVersion() {
  for (const candidate of [path.join(__dirname, '..', 'package.json'), path.join(__dirname, '..', '..', 'package.json')]) {
    try {
      return JSON.parse(fs.readFileSync(candidate, 'utf8')).version;
    } catch {
      // try the next
    }
  }
  return 'unknown';
}

/** Splits `argv` into the run options of `role`; throws on what it does not know. */
function parseRunArgs(role, argv) {
  const args = { help: false, version: false, setup: false };
  const known = role === 'worker' ? ['--name', '--concurrency', '--master', '--loglevel'] : ['--config', '--loglevel'];
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (flag === '-s' || flag === '--setup') args.setup = true;
    else if (flag === '-h' || flag === '--help') args.help = true;
    else if (flag === '-V' || flag === '--version') args.version = true;
    else if (role === 'worker' && flag === '--sandbox') args.sandbox = true;
    else if (role === 'master' && flag === '--exit-when-drained') args.exitWhenDrained = true;
    else if (known.includes(flag)) {
      const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new Error(`${flag} needs a value`);
      args[flag.slice(2)] = value;
    } else throw new Error(`unknown option ${arg} (try --help)`);
  }
  return args;
}

/** What a bin started without usable tokens adds to the core's token message. */
const TOKEN_HINT = {
  worker:
    "To store the master's two tokens in ./.env: npx queue-xec-worker --setup (it asks on a terminal; " +
    'elsewhere pass --token and --transfer-encrypt-token)',
  master: 'To generate both tokens and store them in ./.env: npx queue-xec-master --setup',
};

/** The bin entry point; resolves with the exit code (or never, while a worker or master runs). */
async function main(role, argv, { shared } = {}) {
  if (argv.includes('--setup') || argv.includes('-s')) {
    return setup.main(role, argv);
  }
  let args;
  try {
    args = parseRunArgs(role, argv);
  } catch (error) {
    process.stderr.write(`queue-xec-${role}: ${error.message}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${USAGE[role]}\n`);
    return 0;
  }
  if (args.version) {
    process.stdout.write(`${readVersion()}\n`);
    return 0;
  }
  const api = shared || require('..');
  try {
    return role === 'worker' ? await runWorker(api.Worker, args) : await runMaster(api.Master, args);
  } catch (error) {
    // The core's token message says where tokens come from; the bin adds its own way to store them.
    const hint = error.code === 'ERR_QUEUEXEC_TOKEN' ? `\n${TOKEN_HINT[role]}` : '';
    process.stderr.write(`queue-xec-${role}: ${error.message}${hint}\n`);
    return 1;
  }
}

/**
 * Resolves once a signal asked to stop and `close` finished (0), or once `fatal` is called
 * (1, after `close`).
 */
function untilSignal(close, onFatal = () => {}) {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (code) => {
      if (stopping) return;
      stopping = true;
      close().then(
        () => resolve(code),
        (error) => {
          process.stderr.write(`${error.message}\n`);
          resolve(1);
        },
      );
    };
    process.once('SIGINT', () => stop(0));
    process.once('SIGTERM', () => stop(0));
    onFatal(() => stop(1));
  });
}

async function runWorker(Worker, args) {
  const options = {};
  if (args.name !== undefined) options.name = args.name;
  if (args.concurrency !== undefined) options.concurrency = Number(args.concurrency);
  if (args.master !== undefined) options.master = args.master;
  if (args.loglevel !== undefined) options.loglevel = args.loglevel;
  if (args.sandbox) options.sandbox = true;
  const worker = new Worker(options);
  let fatal = null;
  worker.on('error', (error) => {
    // A task that cannot load is already in the log (a warning); the worker tries again.
    if (error.code === 'ERR_QUEUEXEC_TASK_LOAD') return;
    process.stderr.write(`queue-xec-worker: ${error.message}\n`);
    // Refused by the master (another token): the worker has stopped.
    if (error.code === 'ERR_QUEUEXEC_UNAUTHORIZED' && fatal) fatal();
  });
  // A worker that cannot start has said why through the listener above.
  if (!(await worker.ready.then(() => true, () => false))) return 1;
  return untilSignal(
    () => worker.close(),
    (stop) => {
      fatal = stop;
    },
  );
}

/** The config file to use: --config, else the first of CONFIG_NAMES in the current directory. */
function findConfig(given) {
  if (given) {
    const file = path.resolve(process.cwd(), given);
    if (!fs.existsSync(file)) throw new Error(`the config file ${file} does not exist`);
    return file;
  }
  for (const name of CONFIG_NAMES) {
    const file = path.join(process.cwd(), name);
    if (fs.existsSync(file)) return file;
  }
  return null;
}

async function runMaster(Master, args) {
  const file = findConfig(args.config);
  let config = file ? require(file) : {};
  if (config && config.__esModule && config.default) config = config.default;
  if (typeof config === 'function') config = await config();
  if (!config || typeof config !== 'object') throw new Error(`${file} must export an object of Master options`);
  const { jobs, onResults, ...options } = config;
  if (args.loglevel !== undefined) options.loglevel = args.loglevel;
  const out = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
  const master = new Master({
    ...options,
    onResults: (result) => {
      out(result);
      if (typeof onResults === 'function') onResults(result);
    },
  });
  master.on('error', (error) => {
    // A job that failed for good is a result line already.
    if (error.code !== 'ERR_QUEUEXEC_JOB') process.stderr.write(`queue-xec-master: ${error.message}\n`);
  });
  // A master that cannot start has said why through the listener above.
  if (!(await master.ready.then(() => true, () => false))) return 1;
  let payloads = typeof jobs === 'function' ? await jobs() : jobs;
  if (payloads !== undefined && payloads !== null) {
    if (!Array.isArray(payloads)) payloads = Array.from(payloads);
    await master.pushNewJobs(payloads);
  }
  if (args.exitWhenDrained) {
    await new Promise((resolve) => {
      master.once('drained', resolve);
      // Nothing was queued (or everything was done already).
      master.stats().then((s) => s.queued + s.delayed + s.running === 0 && resolve(), () => {});
    });
    await master.close();
    return 0;
  }
  return untilSignal(() => master.close());
}

module.exports = { main, parseRunArgs, findConfig, USAGE };
