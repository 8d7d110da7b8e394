// The queuexec dashboard page: live updates over server-sent events (/api/events), actions
// through the JSON API with the CSRF header. Plain JS, no dependencies, no inline code (the
// page's Content-Security-Policy allows only this file).
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  let csrf = null;

  function text(el, value) { el.textContent = value; }

  function el(tag, cls, content) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (content !== undefined && content !== null) e.textContent = String(content);
    return e;
  }

  function fmtNum(n) { return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'); }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined) return '–';
    if (ms < 1000) return Math.round(ms) + ' ms';
    const s = ms / 1000;
    if (s < 60) return s.toFixed(1) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + Math.round(s % 60) + ' s';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }

  function fmtAgo(ms) {
    if (!ms) return '–';
    return fmtDuration(Math.max(0, Date.now() - ms)) + ' ago';
  }

  function fmtTime(ms) { return ms ? new Date(ms).toLocaleTimeString() : '–'; }

  // A small area chart: points [{t, v}] over the last `span` seconds ending now.
  function chart(svg, points, span, maxLabel, unit) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const now = Math.floor(Date.now() / 1000);
    const max = Math.max(1, ...points.map((p) => p.v));
    const x = (t) => ((t - (now - span)) / span) * 400;
    const y = (v) => 118 - (v / max) * 112;
    const pts = points.filter((p) => p.t > now - span).map((p) => x(p.t).toFixed(1) + ',' + y(p.v).toFixed(1));
    if (pts.length > 0) {
      const ns = 'http://www.w3.org/2000/svg';
      const area = document.createElementNS(ns, 'polygon');
      const first = pts[0].split(',')[0];
      const last = pts[pts.length - 1].split(',')[0];
      area.setAttribute('points', first + ',118 ' + pts.join(' ') + ' ' + last + ',118');
      svg.appendChild(area);
      const line = document.createElementNS(ns, 'polyline');
      line.setAttribute('points', pts.join(' '));
      svg.appendChild(line);
    }
    text(maxLabel, 'max ' + (Math.round(max * 10) / 10).toLocaleString('en-US') + ' ' + unit);
  }

  // Per-second points with zeros for the seconds without answers, so the line drops to 0.
  function series(timeline, span, pick) {
    const now = Math.floor(Date.now() / 1000);
    const by = new Map(timeline.map((s) => [s.t, s]));
    const out = [];
    for (let t = now - span + 1; t < now; t++) {
      const s = by.get(t);
      const v = s ? pick(s) : null;
      if (v !== null && v !== undefined) out.push({ t, v });
      else if (pick === throughput) out.push({ t, v: 0 });
    }
    return out;
  }
  function throughput(s) { return s.done + s.failed; }
  function runtime(s) { return s.run_ms_avg; }

  function renderOverview(o) {
    const st = o.stats;
    text($('count-queued'), fmtNum(st.queued));
    text($('count-delayed'), fmtNum(st.delayed));
    text($('count-running'), fmtNum(st.running));
    text($('count-done'), fmtNum(st.done));
    text($('count-dead'), fmtNum(o.dead_letters));
    text($('count-workers'), fmtNum(st.workers));
    text($('rate'), (Math.round(o.rate * 10) / 10).toLocaleString('en-US'));
    text($('eta'), o.eta_ms === 0 ? 'idle' : fmtDuration(o.eta_ms));
    chart($('chart-throughput'), series(o.timeline, 120, throughput), 120, $('max-throughput'), 'jobs/s');
    chart($('chart-runtime'), series(o.timeline, 120, runtime), 120, $('max-runtime'), 'ms');
  }

  function renderWorkers(workers) {
    const body = $('workers').tBodies[0];
    body.replaceChildren(...workers.map((w) => {
      const tr = el('tr');
      tr.append(el('td', null, w.name), el('td', 'mono', w.peer_id), el('td', null, w.path),
        el('td', null, fmtNum(w.done)), el('td', null, fmtNum(w.failed)), el('td', null, fmtNum(w.held)),
        el('td', null, w.last_heartbeat_ms ? fmtAgo(w.last_heartbeat_ms) : 'none yet'));
      return tr;
    }));
  }

  let deadShown = null;

  function renderDead(dead) {
    // Re-rendered only when the list changed, so a button is not replaced under the pointer.
    const signature = JSON.stringify(dead.map((d) => [d.key, d.finished_ms]));
    if (signature === deadShown) return;
    deadShown = signature;
    const body = $('dead').tBodies[0];
    body.replaceChildren(...dead.map((d) => {
      const tr = el('tr');
      tr.dataset.key = d.key;
      tr.dataset.id = d.id;
      const actions = el('td');
      const retry = el('button', 'retry', 'Retry');
      retry.type = 'button';
      retry.addEventListener('click', () => act('retry', d.key, d.id));
      const discard = el('button', 'discard', 'Discard');
      discard.type = 'button';
      discard.addEventListener('click', () => act('discard', d.key, d.id));
      actions.append(retry, ' ', discard);
      tr.append(el('td', 'mono', d.id), el('td', null, d.attempts),
        el('td', null, d.worker ? d.worker.name : '–'), el('td', 'err', d.last_error || ''),
        el('td', null, fmtTime(d.finished_ms)), actions);
      return tr;
    }));
  }

  async function getCsrf() {
    if (csrf) return csrf;
    const r = await fetch('/api/csrf', { credentials: 'same-origin' });
    if (!r.ok) throw new Error('cannot get the CSRF token: HTTP ' + r.status);
    csrf = (await r.json()).csrf;
    return csrf;
  }

  async function act(what, key, id) {
    const status = $('action-status');
    try {
      const token = await getCsrf();
      const r = await fetch('/api/dead/' + what, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-Queuexec-Csrf': token },
        body: JSON.stringify({ id: key }),
      });
      const answer = await r.json();
      if (!r.ok) throw new Error(answer.error || 'HTTP ' + r.status);
      text(status, (what === 'retry' ? 'queued again: ' : 'discarded: ') + id);
      status.dataset.last = what + ':' + id;
    } catch (e) {
      text(status, what + ' of ' + id + ' failed: ' + e.message);
    }
  }

  const FIELDS = [
    ['id', 'id'], ['status', 'status'], ['attempts', 'attempts'], ['max_attempts', 'max attempts'],
    ['runs', 'runs'], ['worker', 'worker'], ['last_error', 'last error'], ['task_type', 'type'],
    ['priority', 'priority'], ['pushed_ms', 'pushed'], ['started_ms', 'started'],
    ['finished_ms', 'finished'], ['queue_wait_ms', 'queue wait'], ['run_ms', 'run time'],
  ];

  async function lookup(ev) {
    ev.preventDefault();
    const id = $('lookup-id').value.trim();
    const out = $('lookup-result');
    if (!id) return;
    const r = await fetch('/api/jobs/' + encodeURIComponent(id), { credentials: 'same-origin' });
    const job = await r.json();
    const items = [];
    if (!r.ok) {
      items.push(el('dt', null, 'error'), el('dd', null, job.error));
    } else {
      for (const [k, label] of FIELDS) {
        let v = job[k];
        if (v === null || v === undefined) v = '–';
        else if (k === 'worker') v = v.name + ' (' + v.id + ')';
        else if (k.endsWith('_ms') && (k === 'queue_wait_ms' || k === 'run_ms')) v = fmtDuration(v);
        else if (k.endsWith('_ms')) v = new Date(v).toLocaleString();
        const dd = el('dd', null, v);
        dd.dataset.field = k;
        items.push(el('dt', null, label), dd);
      }
    }
    out.replaceChildren(...items);
  }

  async function start() {
    $('lookup').addEventListener('submit', lookup);
    fetch('/api/info', { credentials: 'same-origin' }).then((r) => r.json())
      .then((i) => text($('peer'), i.peer_id + ' · v' + i.version)).catch(() => {});
    const live = $('live');
    const source = new EventSource('/api/events');
    source.addEventListener('update', (ev) => {
      const u = JSON.parse(ev.data);
      renderOverview(u.overview);
      renderWorkers(u.workers);
      renderDead(u.dead);
      live.className = 'badge on';
      text(live, 'live');
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    });
    source.addEventListener('error', () => {
      live.className = 'badge off';
      text(live, 'disconnected, retrying…');
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}());
