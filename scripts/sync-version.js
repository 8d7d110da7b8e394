#!/usr/bin/env node
'use strict';
// One version for everything, from Cargo's [workspace.package] version in the root Cargo.toml:
// the npm packages (root workspace, queuexec-native, queue-xec-master, queue-xec-worker and
// their optionalDependencies on @queuexec/native-*, the six platform packages in
// bindings/node/npm/), package-lock.json's workspace entries, and the wheel (pyproject.toml
// takes its version from Cargo through maturin: `dynamic = ["version"]`, checked here).
//
//   node scripts/sync-version.js           writes the Cargo version into every file above
//   node scripts/sync-version.js --check   changes nothing; exits 1 naming each file that disagrees

const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const check = process.argv.includes('--check');

function cargoVersion() {
  const toml = fs.readFileSync(path.join(root, 'Cargo.toml'), 'utf8');
  const section = toml.split(/^\[/m).find((s) => s.startsWith('workspace.package]'));
  const match = section && section.match(/^version\s*=\s*"([^"]+)"/m);
  if (!match) {
    console.error('sync-version: no `version = "..."` under [workspace.package] in Cargo.toml; add it there (it is the one source of the version)');
    process.exit(2);
  }
  return match[1];
}

const version = cargoVersion();
const problems = [];
const changed = [];

function rel(file) {
  return path.relative(root, file);
}

/** Applies `fix(json)` (which returns a list of "field: old" strings it changed) to one JSON file. */
function syncJson(file, fix) {
  const text = fs.readFileSync(file, 'utf8');
  const json = JSON.parse(text);
  const diffs = fix(json);
  if (diffs.length === 0) return;
  if (check) {
    problems.push(`${rel(file)}: ${diffs.join(', ')} (want ${version})`);
    return;
  }
  fs.writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
  changed.push(rel(file));
}

function setVersion(obj, label, diffs) {
  if (obj.version !== version) {
    diffs.push(`${label}version ${obj.version}`);
    obj.version = version;
  }
}

function setNativeDeps(obj, label, diffs) {
  for (const field of ['optionalDependencies', 'dependencies']) {
    for (const [name, spec] of Object.entries(obj[field] || {})) {
      if (name.startsWith('@queuexec/native-') && spec !== version) {
        diffs.push(`${label}${field}.${name} ${spec}`);
        obj[field][name] = version;
      }
    }
  }
}

const nodeDir = path.join(root, 'bindings', 'node');
const npmDir = path.join(nodeDir, 'npm');
const packages = [
  path.join(root, 'package.json'),
  path.join(nodeDir, 'package.json'),
  path.join(nodeDir, 'packages', 'queue-xec-master', 'package.json'),
  path.join(nodeDir, 'packages', 'queue-xec-worker', 'package.json'),
  ...fs.readdirSync(npmDir).map((d) => path.join(npmDir, d, 'package.json')).filter((f) => fs.existsSync(f)),
];
for (const file of packages) {
  syncJson(file, (json) => {
    const diffs = [];
    setVersion(json, '', diffs);
    setNativeDeps(json, '', diffs);
    return diffs;
  });
}

const lock = path.join(root, 'package-lock.json');
if (fs.existsSync(lock)) {
  syncJson(lock, (json) => {
    const diffs = [];
    setVersion(json, '', diffs);
    for (const where of ['', 'bindings/node', 'bindings/node/packages/queue-xec-master', 'bindings/node/packages/queue-xec-worker']) {
      const entry = json.packages && json.packages[where];
      if (!entry) continue;
      setVersion(entry, `packages["${where}"].`, diffs);
      setNativeDeps(entry, `packages["${where}"].`, diffs);
    }
    return diffs;
  });
}

const pyproject = fs.readFileSync(path.join(root, 'pyproject.toml'), 'utf8');
if (!/^dynamic\s*=\s*\[[^\]]*"version"/m.test(pyproject) || /^version\s*=/m.test(pyproject)) {
  problems.push('pyproject.toml: the wheel must take its version from Cargo (`dynamic = ["version"]` under [project], no `version =`)');
}

if (problems.length > 0) {
  console.error(`sync-version: these disagree with Cargo's workspace version ${version}; run \`node scripts/sync-version.js\`:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.error(check ? `sync-version: every package is at ${version}` : `sync-version: ${version}; updated ${changed.length ? changed.join(', ') : 'nothing (all agreed)'}`);
