'use strict';
// `queue-xec-master --setup` and `queue-xec-worker --setup`: write `token` and
// `transferEncryptToken` to ./.env, as `node cli.js --setup` and `node worker.js --setup` did.
// On a terminal it asks; without one it never prompts (flags or the environment decide).

const path = require('node:path');
const readline = require('node:readline');

const native = require('./native');

// Generation, the token rule and the writing of .env are the core's (the same as
// `queuexec setup` and Python): these only turn its errors into a message for a prompt.

/** The core's complaint about a room token, or null when it is valid. */
function checkRoomToken(token) {
  return problem(() => native.checkRoomToken(token));
}

/** The core's complaint about a transfer token, or null when it is valid. */
function checkTransferToken(token) {
  return problem(() => native.checkTransferToken(token));
}

function problem(check) {
  try {
    check();
    return null;
  } catch (error) {
    return error.message;
  }
}

function parseArgs(argv) {
  const args = { setup: false, force: false, help: false, token: undefined, transferEncryptToken: undefined, envFile: '.env' };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => (inline !== undefined ? inline : argv[++i]);
    switch (flag) {
      case '-s':
      case '--setup':
        args.setup = true;
        break;
      case '-f':
      case '--force':
        args.force = true;
        break;
      case '-h':
      case '--help':
        args.help = true;
        break;
      case '--token':
        args.token = value();
        break;
      case '--transfer-encrypt-token':
      case '--transferEncryptToken':
        args.transferEncryptToken = value();
        break;
      case '--env-file':
        args.envFile = value();
        break;
      default:
        throw new Error(`unknown option ${arg} (try --help)`);
    }
  }
  return args;
}

/**
 * Runs the setup. `io` = {stdin, stdout, stderr, cwd, env, isTTY} for tests.
 * Resolves with the exit code.
 */
async function runSetup(role, args, io = {}) {
  const stdin = io.stdin || process.stdin;
  const stdout = io.stdout || process.stdout;
  const stderr = io.stderr || process.stderr;
  const cwd = io.cwd || process.cwd();
  const env = io.env || process.env;
  const interactive = io.isTTY !== undefined ? io.isTTY : Boolean(stdin.isTTY && stdout.isTTY);
  const envPath = path.resolve(cwd, args.envFile);
  const say = (text) => stdout.write(`${text}\n`);
  const fail = (text) => {
    stderr.write(`queue-xec-${role} --setup: ${text}\n`);
    return 1;
  };

  const rl = interactive ? readline.createInterface({ input: stdin, output: stdout }) : null;
  // Lines typed (or pasted) ahead of a question are kept by the iterator, not lost.
  const lines = rl ? rl[Symbol.asyncIterator]() : null;
  const question = async (text) => {
    stdout.write(text);
    const { value, done } = await lines.next();
    if (done) throw new Error('no answer (input closed)');
    return value;
  };
  try {
    const ask = async (text, check) => {
      for (;;) {
        const answer = (await question(text)).trim();
        const problem = check ? check(answer) : null;
        if (!problem) return answer;
        say(problem);
      }
    };
    const yes = async (text, byDefault) => {
      const answer = (await question(`${text} ${byDefault ? '(Y/n)' : '(y/N)'} `)).trim().toLowerCase();
      return answer === '' ? byDefault : answer.startsWith('y');
    };

    let hasTokens;
    try {
      hasTokens = native.envFileHasTokens(envPath);
    } catch (error) {
      return fail(error.message);
    }
    if (hasTokens && !args.force) {
      if (!interactive) {
        return fail(`${envPath} already has tokens; pass --force to replace them`);
      }
      if (!(await yes(`${envPath} already has tokens. Replace them?`, false))) {
        say('Nothing changed.');
        return 0;
      }
    }

    let token = args.token;
    let transfer = args.transferEncryptToken;
    if (role === 'master') {
      if (token === undefined && transfer === undefined && interactive && !(await yes('Create new random tokens?', true))) {
        const { minTransferTokenChars } = native.defaults();
        transfer = await ask(`transferEncryptToken [${minTransferTokenChars}+ characters]: `, checkTransferToken);
        token = await ask('token: ', checkRoomToken);
      }
      if (!interactive && token === undefined && transfer === undefined) {
        say('No terminal to ask on: generating new random tokens (pass --token and --transfer-encrypt-token to choose them).');
      }
      if (token === undefined) token = native.generateToken();
      if (transfer === undefined) transfer = native.generateToken();
    } else {
      // A worker's tokens come from its master: ask for them, or take them from flags or the
      // environment.
      if (token === undefined && env.token) token = env.token;
      if (transfer === undefined && env.transferEncryptToken) transfer = env.transferEncryptToken;
      if (interactive) {
        if (transfer === undefined) transfer = await ask('Enter Transfer Encrypt Token: ', checkTransferToken);
        if (token === undefined) token = await ask('Enter Master token: ', checkRoomToken);
      } else if (token === undefined || transfer === undefined) {
        return fail(
          'no terminal to ask on: pass the master\'s tokens with --token <token> --transfer-encrypt-token <token> ' +
            '(or set them in the environment)',
        );
      }
    }
    const refused = checkRoomToken(token) || checkTransferToken(transfer);
    if (refused) return fail(refused);
    const written = problem(() => native.writeEnvTokens(envPath, token, transfer));
    if (written) return fail(written);
    if (role === 'master') {
      say(`Share these with your workers (they are in ${envPath}):`);
      say(`  token=${token}`);
      say(`  transferEncryptToken=${transfer}`);
    }
    say(`Settings stored in ${envPath}`);
    return 0;
  } finally {
    if (rl) rl.close();
  }
}

const USAGE = {
  master: `Usage: queue-xec-master --setup [--force] [--token T] [--transfer-encrypt-token T] [--env-file .env]

Writes token and transferEncryptToken to ./.env (generated unless given), which
require('queue-xec-master') reads. Give the same two values to your workers.`,
  worker: `Usage: queue-xec-worker --setup [--force] [--token T] [--transfer-encrypt-token T] [--env-file .env]

Writes the master's token and transferEncryptToken to ./.env, which
require('queue-xec-worker') reads. On a terminal it asks for them.`,
};

/** The `bin` entry point. */
async function main(role, argv) {
  let args;
  try {
    args = parseArgs(argv);
  } catch (error) {
    process.stderr.write(`queue-xec-${role}: ${error.message}\n`);
    return 2;
  }
  if (args.help || !args.setup) {
    process.stdout.write(`${USAGE[role]}\n`);
    return args.help ? 0 : 2;
  }
  return runSetup(role, args);
}

module.exports = { main, runSetup, parseArgs, checkRoomToken, checkTransferToken };
