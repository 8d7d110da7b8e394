// eslint (flat config) over the repository's JavaScript: the Node addon's JS layer, the npm
// packages, their tests, scripts and bench, and the cross-language test fixtures. Run by
// scripts/test.sh as `npx eslint`; `npm run lint` at the root does the same.
'use strict';

const js = require('@eslint/js');
const globals = require('globals');

module.exports = [
  {
    ignores: [
      '**/node_modules/**',
      // Copies made by `npm pack` (bindings/node/scripts/bundle-runtime.js).
      'bindings/node/packages/*/runtime/**',
      'bindings/node/native/**',
      'target/**',
      // scripts/bench.sh's peers and virtualenv (bench/deps.sh).
      'bench/.deps/**',
      'bench/.venv/**',
      // Code for the embedded engine (js-runtime), not for Node.
      'js-runtime/**',
      // queue-xec's own examples, kept as published (their lint comments name their rules).
      'bindings/node/test/fixtures/upstream/**',
    ],
  },
  {
    files: ['bindings/node/**/*.js', 'tests/**/*.js', 'bench/*.js', 'eslint.config.js'],
    ...js.configs.recommended,
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'commonjs',
      globals: { ...globals.node },
    },
    rules: {
      ...js.configs.recommended.rules,
      // Unused variables are errors; unused callback parameters and caught errors are not.
      'no-unused-vars': ['error', { args: 'none', caughtErrors: 'none' }],
      'no-empty': ['error', { allowEmptyCatch: true }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-var': 'error',
      'prefer-const': 'error',
    },
  },
  {
    // The dashboard page's script (compiled into queuexec-dashboard), run by browsers.
    files: ['dashboard/src/assets/*.js'],
    ...js.configs.recommended,
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'script',
      globals: { ...globals.browser },
    },
    rules: {
      ...js.configs.recommended.rules,
      'no-unused-vars': ['error', { args: 'none', caughtErrors: 'none' }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-var': 'error',
      'prefer-const': 'error',
    },
  },
];
