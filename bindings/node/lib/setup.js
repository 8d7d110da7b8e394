'use strict';
// `queue-xec-master --setup` and `queue-xec-worker --setup`: write `token` and
// `transferEncryptToken` to ./.env, as `node cli.js --setup` and `node worker.js --setup` did.
// On a terminal it asks; without one it never prompts (flags or the environment decide).

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const MIN_ROOM_TOKEN = 20;
const MIN_TRANSFER_TOKEN = 32;

/** A random alphanumeric string (crypto-grade, unbiased). */
function randomToken(length) {
  let out = '';
  while (out.length < length) {
    for (const byte of crypto.randomBytes(length * 2)) {
      // 248 = 4 * 62: bytes above it would bias the first characters.
      if (byte < 248 && out.length < length) out += ALPHANUMERIC[byte % 62];
    }
  }
  return out;
}

function checkRoomToken(token) {
  if (typeof token !== 'string' || token.length < MIN_ROOM_TOKEN) {
    return `the token must have at least ${MIN_ROOM_TOKEN} characters`;
  }
  if (/\s/.test(token)) return 'the token must not contain spaces';
  return null;
}

function checkTransferToken(token) {
  if (typeof token !== 'string' || token.length < MIN_TRANSFER_TOKEN) {
    return `the transferEncryptToken must have at least ${MIN_TRANSFER_TOKEN} characters`;
  }
  if (/\s/.test(token)) return 'the transferEncryptToken must not contain spaces';
  return null;
}

/** `.env` text with these keys set (replaced in place, or appended), other lines kept. */
function updateEnvText(text, values) {
  const lines = text.length > 0 ? text.replace(/\r\n/g, '\n').replace(/\n$/, '').split('\n') : [];
  const done = new Set();
  const out = lines.map((line) => {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=/.exec(line);
    if (m && Object.prototype.hasOwnProperty.call(values, m[1])) {
      done.add(m[1]);
      return `${m[1]}=${values[m[1]]}`;
    }
    return line;
  });
  for (const [key, value] of Object.entries(values)) if (!done.has(key)) out.push(`${key}=${value}`);
  return `${out.join('\n')}\n`;
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

    const existing = fs.existsSync(envPath) ? fs.readFileSync(envPath, 'utf8') : '';
    const hasTokens = /^\s*(?:export\s+)?(token|transferEncryptToken)\s*=/m.test(existing);
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
        transfer = await ask(`transferEncryptToken [${MIN_TRANSFER_TOKEN}+ characters]: `, checkTransferToken);
        token = await ask(`token [${MIN_ROOM_TOKEN}+ characters]: `, checkRoomToken);
      }
      if (!interactive && token === undefined && transfer === undefined) {
        say('No terminal to ask on: generating new random tokens (pass --token and --transfer-encrypt-token to choose them).');
      }
      if (token === undefined) token = randomToken(32);
      if (transfer === undefined) transfer = randomToken(32);
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
    const problem = checkRoomToken(token) || checkTransferToken(transfer);
    if (problem) return fail(problem);

    fs.writeFileSync(envPath, updateEnvText(existing, { token, transferEncryptToken: transfer }), { mode: 0o600 });
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

module.exports = { main, runSetup, parseArgs, randomToken, updateEnvText, checkRoomToken, checkTransferToken };
