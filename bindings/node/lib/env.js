'use strict';
// Settings from the environment, as queue-xec reads them: `.env` in the current directory is
// loaded with dotenv (variables already set win), then `token`, `transferEncryptToken` and
// `LOG_LEVEL` are taken from process.env when the constructor does not give them.

const { TokenError, fromNative } = require('./errors');

let dotenvLoaded = false;

/** Loads ./.env once per process, as `require('dotenv').config()` does in queue-xec. */
function loadDotenv() {
  if (dotenvLoaded) return;
  dotenvLoaded = true;
  try {
    require('dotenv').config({ quiet: true });
  } catch (error) {
    // A missing dotenv is not fatal: the environment and the constructor still work.
    if (error && error.code !== 'MODULE_NOT_FOUND') throw error;
  }
}

const SETUP_HINT = {
  master: 'npx queue-xec-master --setup',
  worker: 'npx queue-xec-worker --setup',
};

/**
 * The tokens to use: the constructor's, else the environment's. Throws a TokenError that says
 * what is missing and how to make it; the transfer token must have at least 32 characters.
 */
function resolveTokens(token, transferEncryptToken, role, native) {
  const room = nonEmpty(token) ? token : process.env.token;
  const transfer = nonEmpty(transferEncryptToken) ? transferEncryptToken : process.env.transferEncryptToken;
  if (!nonEmpty(room)) {
    throw new TokenError(
      `token not defined: pass it in the constructor or with the environment variable "token" (or in .env), ` +
        `or generate one with \`${SETUP_HINT[role]}\``,
      { code: 'ERR_QUEUEXEC_TOKEN' },
    );
  }
  if (!nonEmpty(transfer)) {
    throw new TokenError(
      `transferEncryptToken not defined: pass it in the constructor or with the environment variable ` +
        `"transferEncryptToken" (or in .env); it must have at least 32 characters and be the same on the ` +
        `master and its workers (\`${SETUP_HINT[role]}\` writes one)`,
      { code: 'ERR_QUEUEXEC_TOKEN' },
    );
  }
  if (typeof room !== 'string' || typeof transfer !== 'string') {
    throw new TokenError('token and transferEncryptToken must be strings', { code: 'ERR_QUEUEXEC_TOKEN' });
  }
  try {
    native.checkTokens(room, transfer);
  } catch (error) {
    throw fromNative(error);
  }
  return { token: room, transferEncryptToken: transfer };
}

function nonEmpty(value) {
  return typeof value === 'string' ? value.length > 0 : value !== undefined && value !== null && value !== '';
}

// The logger lives in logger.js; re-exported here for the modules that take it from env.js.
const { Logger } = require('./logger');

/** A number from an option or an environment variable; `fallback` when neither is usable. */
function numberSetting(value, fallback) {
  if (value === undefined || value === null || value === '') return fallback;
  const n = Number(value);
  return Number.isFinite(n) ? n : fallback;
}

module.exports = { loadDotenv, resolveTokens, Logger, numberSetting };
