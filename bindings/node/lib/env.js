'use strict';
// Settings from the environment, as queue-xec reads them: `./.env` is loaded into process.env
// once (variables already set win), then `token`, `transferEncryptToken` and `LOG_LEVEL` are
// taken from process.env when the constructor does not give them. The .env parser, the order
// (argument, environment, .env) and the token rule are the core's (`native.resolveTokens`), the
// same for the CLI and Python.

const { TokenError, fromNative } = require('./errors');
const native = require('./native');

let dotenvLoaded = false;

/**
 * Loads ./.env into process.env once per process, as `require('dotenv').config()` did in
 * queue-xec (variables already set win). A .env the core's parser refuses throws a ConfigError
 * naming its line.
 */
function loadDotenv() {
  if (dotenvLoaded) return;
  dotenvLoaded = true;
  let entries;
  try {
    entries = native.readDotenv();
  } catch (error) {
    throw fromNative(error);
  }
  for (const { key, value } of entries) {
    if (!Object.prototype.hasOwnProperty.call(process.env, key)) process.env[key] = value;
  }
}

/**
 * The tokens to use: the constructor's, else the environment's, else ./.env's. Throws a
 * TokenError saying what is missing, where it may come from and how to make it.
 */
function resolveTokens(token, transferEncryptToken) {
  try {
    return native.resolveTokens(optionalString(token), optionalString(transferEncryptToken), undefined);
  } catch (error) {
    throw fromNative(error);
  }
}

/** A token option as the core takes it: absent stays absent, anything else must be a string. */
function optionalString(value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') {
    throw new TokenError(`a token must be a string, got ${typeof value}`, { code: 'ERR_QUEUEXEC_TOKEN' });
  }
  return value;
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
