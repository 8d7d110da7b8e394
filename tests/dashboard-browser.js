'use strict';
// The dashboard in a real browser: Debian's headless Chromium, driven through chromedriver's
// WebDriver HTTP API (nothing is downloaded). A Node master (queue-xec-master, option
// `dashboard`) runs 5,000 jobs on two `queuexec worker --exec` processes; the page must show the
// counts changing live (server-sent events, no reload), show the job that was dead-lettered,
// retry it with its Retry button and show it finished; a screenshot goes to
// $QUEUEXEC_SCREENSHOT (default: dashboard.png in the binary's target directory; the README's
// docs/dashboard.png is one such screenshot, copied by hand).
//
//   node tests/dashboard-browser.js [path/to/queuexec]     (default: target/debug/queuexec)
//
// Needs the addon built (`npm run build`) and chromium + chromium-driver (scripts/ensure-deps.sh).
// Every wait has a deadline, and the whole run ends after 280 s at most.

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const JOBS = 5000;
const OVERALL_MS = 280_000;
const SCREENSHOT = process.env.QUEUEXEC_SCREENSHOT || path.join(path.dirname(path.resolve(process.argv[2] || path.join(ROOT, 'target', 'debug', 'queuexec'))), '..', 'dashboard.png');

const children = [];
const dirs = [];
let master = null;

function cleanup() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
}

function fail(message) {
  console.error(`dashboard-browser: FAILED: ${message}`);
  cleanup();
  process.exit(1);
}

const overall = setTimeout(() => fail(`not finished within ${OVERALL_MS / 1000} s`), OVERALL_MS);

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(what, ms, check) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(100);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function tmp(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

/** A minimal WebDriver client over fetch (W3C WebDriver, as chromedriver speaks it). */
class WebDriver {
  constructor(base) {
    this.base = base;
    this.session = null;
  }

  async call(method, route, body) {
    const url = this.base + (this.session ? `/session/${this.session}` : '') + route;
    const response = await fetch(url, {
      method,
      headers: { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(`WebDriver ${method} ${route}: ${JSON.stringify(answer.value).slice(0, 500)}`);
    return answer.value;
  }

  async start(args) {
    const value = await this.call('POST', '/session', {
      capabilities: {
        alwaysMatch: {
          browserName: 'chrome',
          'goog:chromeOptions': { binary: '/usr/bin/chromium', args },
        },
      },
    });
    this.session = value.sessionId;
  }

  run(script, ...args) {
    return this.call('POST', '/execute/sync', { script, args });
  }

  async find(css) {
    const value = await this.call('POST', '/element', { using: 'css selector', value: css });
    return Object.values(value)[0];
  }

  async click(css) {
    // The page re-renders tables as updates arrive: find the element again if it went stale.
    for (let attempt = 1; ; attempt++) {
      const id = await this.find(css);
      try {
        await this.call('POST', `/element/${id}/click`, {});
        return;
      } catch (e) {
        if (attempt >= 5 || !/stale element/.test(e.message)) throw e;
      }
    }
  }

  async type(css, text) {
    const id = await this.find(css);
    await this.call('POST', `/element/${id}/value`, { text });
  }

  text(css) {
    return this.run('const e = document.querySelector(arguments[0]); return e ? e.textContent : null;', css);
  }

  async quit() {
    if (!this.session) return;
    await this.call('DELETE', '').catch(() => {});
    this.session = null;
  }
}

function count(text) {
  return text == null ? NaN : Number(String(text).replace(/[^0-9]/g, ''));
}

async function main() {
  const bin = path.resolve(process.argv[2] || path.join(ROOT, 'target', 'debug', 'queuexec'));
  if (!fs.existsSync(bin)) fail(`no queuexec binary at ${bin}: build it (cargo build -p queuexec-cli) or pass its path`);
  for (const tool of ['/usr/bin/chromium', '/usr/bin/chromedriver']) {
    if (!fs.existsSync(tool)) fail(`${tool} is missing: run scripts/ensure-deps.sh (apt packages chromium, chromium-driver)`);
  }

  const work = tmp('qx-dash-');
  const roomDir = path.join(work, 'rooms');
  const tokens = {
    token: `room${crypto.randomBytes(8).toString('hex')}`,
    transferEncryptToken: crypto.randomBytes(24).toString('hex'),
  };
  Object.assign(process.env, { QUEUEXEC_ROOM_DIR: roomDir, QUEUEXEC_MDNS: '0' });
  const Master = require(path.join(ROOT, 'bindings', 'node', 'packages', 'queue-xec-master'));
  const results = new Map();
  master = new Master({
    ...tokens,
    watchAssets: false,
    defaultRetries: 0,
    loglevel: 'error',
    dashboard: '127.0.0.1:0',
    onResults: (r) => results.set(String(r.jobID), (results.get(String(r.jobID)) || 0) + 1),
  });
  await master.ready;
  const url = master.dashboardUrl;
  if (!/^http:\/\/127\.0\.0\.1:\d+\/$/.test(url || '')) fail(`dashboardUrl is ${url}`);

  // Each job runs a small shell command; data holding "poison" fails until the
  // file `cure` exists.
  const cure = path.join(work, 'cure');
  const script = path.join(work, 'solve.sh');
  fs.writeFileSync(script, `x=$(cat)\ncase "$x" in\n  *poison*) if [ -f '${cure}' ]; then echo '{"cured":true}'; else echo 'poisoned input' >&2; exit 3; fi ;;\n  *) echo "$x" ;;\nesac\n`);
  const workerEnv = { ...process.env, ...tokens, LOG_LEVEL: 'warn' };
  for (const name of ['alpha', 'beta']) {
    const child = spawn(bin, ['worker', '--name', name, '--concurrency', '8', '--exec', `sh ${script}`, '--workplace', path.join(work, `wp-${name}`)], {
      env: workerEnv,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.push(child);
  }

  // The browser, on a fresh profile.
  const port = await freePort();
  const driver = spawn('/usr/bin/chromedriver', [`--port=${port}`, '--allowed-ips=127.0.0.1'], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(driver);
  const wd = new WebDriver(`http://127.0.0.1:${port}`);
  await until('chromedriver ready', 20_000, async () => {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/status`, { signal: AbortSignal.timeout(2000) });
      return r.ok && (await r.json()).value.ready;
    } catch {
      return false;
    }
  });
  const profile = tmp('qx-chromium-');
  await wd.start([
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--user-data-dir=${profile}`, '--window-size=1280,1250',
  ]);
  try {
    await wd.call('POST', '/url', { url });
    await until('the page connects to its event stream', 20_000, async () => (await wd.text('#live')) === 'live');
    const loadedAt = await wd.run('return performance.timeOrigin;');

    // The jobs: pushed only now, so the page sees them from the start.
    await master.pushNewJob({ id: 'poison', kind: 'poison' }, { retries: 0 });
    const payloads = [];
    for (let i = 0; i < JOBS; i++) payloads.push({ id: `j${i}`, n: i });
    await master.pushNewJobs(payloads);

    // Live counts: the number done grows several times while jobs still run, without a reload.
    const seen = [];
    await until('done counts changing live on the page', 120_000, async () => {
      const done = count(await wd.text('#count-done'));
      if (Number.isFinite(done) && (seen.length === 0 || done !== seen[seen.length - 1])) seen.push(done);
      const between = seen.filter((v) => v > 0 && v < JOBS);
      return between.length >= 3;
    });
    const increasing = seen.every((v, i) => i === 0 || v > seen[i - 1]);
    if (!increasing) throw new Error(`done counts went back: ${seen.join(' ')}`);
    const queued = count(await wd.text('#count-queued'));
    console.log(`dashboard-browser: done counts seen live: ${seen.join(' → ')} (queued ${queued})`);

    // The dead letter shows up with its error, while the run goes on.
    await until('the dead letter on the page', 60_000, async () =>
      wd.run('return !!document.querySelector("#dead tbody tr[data-id=\\"poison\\"]");'));
    const error = await wd.text('#dead tbody tr[data-id="poison"] td.err');
    if (!/poisoned input/.test(error || '')) throw new Error(`the dead letter's error reads ${JSON.stringify(error)}`);
    const workersShown = await wd.run('return document.querySelectorAll("#workers tbody tr").length;');
    if (workersShown !== 2) throw new Error(`the workers table shows ${workersShown} rows, not 2`);
    const eta = await wd.text('#eta');
    console.log(`dashboard-browser: dead letter shown; ETA ${eta}; workers ${workersShown}`);

    // Screenshot mid-run: counts, charts, workers, the dead letter.
    await wd.type('#lookup-id', 'poison');
    await wd.click('#lookup-go');
    await until('the lookup of the dead job', 20_000, async () => (await wd.text('#lookup-result dd[data-field="status"]')) === 'dead');
    await sleep(1500);
    const png = Buffer.from(await wd.call('GET', '/screenshot'), 'base64');
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    fs.writeFileSync(SCREENSHOT, png);
    console.log(`dashboard-browser: screenshot ${path.relative(ROOT, SCREENSHOT)} (${png.length} bytes)`);

    // Retry from the page, with the cure in place: it runs again and finishes.
    fs.writeFileSync(cure, '');
    await wd.click('#dead tbody tr[data-id="poison"] button.retry');
    await until('the retry acknowledged on the page', 20_000, async () =>
      (await wd.run('return document.getElementById("action-status").dataset.last || "";')) === 'retry:poison');
    await until('the retried job finished', 60_000, async () => {
      await wd.click('#lookup-go');
      await sleep(200);
      return (await wd.text('#lookup-result dd[data-field="status"]')) === 'done';
    });
    await until('every job done on the page', 180_000, async () => count(await wd.text('#count-done')) === JOBS + 1);
    await until('no dead letter left on the page', 20_000, async () => count(await wd.text('#count-dead')) === 0);
    const reloaded = await wd.run('return performance.timeOrigin;');
    if (reloaded !== loadedAt) throw new Error('the page was reloaded: the counts must change live');
    const updates = Number(await wd.run('return document.body.dataset.updates;'));
    console.log(`dashboard-browser: retried job finished; ${updates} live updates received`);
    await until('results for every job', 30_000, async () => results.size === JOBS + 1 && results.get('poison') === 2);
  } finally {
    await wd.quit();
  }
  await master.close();
  cleanup();
  clearTimeout(overall);
  console.log('dashboard-browser: ok');
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
