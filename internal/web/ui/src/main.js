// holdfast lab dashboard: the browser side.
//
// Reads the live feed (/lab/stream, server-sent events: state, tick, event,
// report) and drives the lab through /lab/* (load, drills, switchover,
// reset). Plain DOM, no framework; charts with uPlot. Everything is served
// by the Go api server from the embedded dist/ directory: no request leaves
// the origin.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';

const WINDOW_S = 300; // charts show the last 5 minutes of 1-s buckets
const MAX_EVENTS = 1000; // client-side cap on the timeline
const AUTH_MSG = 'Open the dashboard link printed by holdfast up (it carries the admin token)';
const DEFAULT_PATHS = ['direct', 'proxy', 'buffer'];

// ---------------------------------------------------------------- state

const S = {
  loaded: false, // a State has arrived
  now: null,
  clusterName: '',
  scenarios: [],
  paths: [],
  cluster: null,
  clusterStale: false, // the last status read failed: members shown are the last known
  clusterError: '',
  proxy: null,
  regionProxies: {}, // region -> proxy status, for regions with their own proxy
  buffer: null,
  load: null,
  drill: null,
  series: [], // oldest first, 1-s buckets, at most WINDOW_S
  events: [], // oldest first
  reports: [], // oldest first
};
const busy = { load: false, drill: false, cluster: false };
const expanded = new Set(); // indices (oldest-first) of expanded report rows

// ---------------------------------------------------------------- helpers

const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'style') el.style.cssText = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const fmtInt = (v) => (isNum(v) ? Math.round(v).toLocaleString('en-US') : '—');

function fmtNum(v, digits = 1) {
  if (!isNum(v)) return '—';
  return Number.isInteger(v) ? v.toLocaleString('en-US') : v.toFixed(digits);
}

function fmtBytes(v) {
  if (!isNum(v)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let n = v;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function fmtDuration(ms) {
  if (!isNum(ms)) return '—';
  if (Math.abs(ms) < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(3)} s`;
}

function fmtSigned(ms) {
  const sign = ms < 0 ? '−' : '+';
  return `${sign}${(Math.abs(ms) / 1000).toFixed(3)} s`;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

function parseTime(s) {
  if (!s) return NaN;
  const t = Date.parse(s);
  return Number.isNaN(t) ? NaN : t;
}

function fmtClock(ms) {
  if (!isNum(ms)) return '—';
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// ---------------------------------------------------------------- colors

const PALETTE = ['#4c9aff', '#3fb950', '#c297ff', '#f0883e', '#39c5cf', '#ff7eb6', '#a5d6ff', '#d29922'];
const FIXED_COLORS = { buffer: '#e3b341', '?': '#8b949e' };
const memberColors = new Map();

function colorOf(key) {
  if (FIXED_COLORS[key]) return FIXED_COLORS[key];
  if (!memberColors.has(key)) memberColors.set(key, PALETTE[memberColors.size % PALETTE.length]);
  return memberColors.get(key);
}

// Members get their colors in name order, so home-a/b/c look the same in
// every session whatever order keys first show up in.
function assignMemberColors() {
  const names = (S.cluster?.members || []).map((m) => m.name).sort();
  for (const n of names) colorOf(n);
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(message, status, problem) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

async function api(method, path, body) {
  const opts = {
    method,
    credentials: 'same-origin',
    headers: { Accept: 'application/json, application/problem+json' },
  };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (err) {
    throw new ApiError(`${method} ${path}: the api server did not answer (${err.message})`, 0);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.status === 401) throw new ApiError(AUTH_MSG, 401, data);
  if (!res.ok) {
    const detail = (data && (data.detail || data.title)) || text.trim() || `${res.status} ${res.statusText}`;
    throw new ApiError(detail, res.status, data);
  }
  return data;
}

// ---------------------------------------------------------------- messages

function showError(text) {
  $('message').textContent = text;
  $('msgbar').hidden = false;
}

function clearError() {
  $('message').textContent = '';
  $('msgbar').hidden = true;
  for (const el of document.querySelectorAll('.invalid')) el.classList.remove('invalid');
}

let noticeTimer = 0;
function showNotice(text) {
  const el = $('notice');
  el.textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    el.textContent = '';
  }, 8000);
}

// fieldInputs maps a problem's "field" to the input to mark.
function reportApiError(action, err, fieldInputs = {}) {
  let text = err.status === 401 ? err.message : `${action}: ${err.message}`;
  const field = err.problem && err.problem.field;
  if (field) {
    const input = fieldInputs[field];
    if (input) input.classList.add('invalid');
    if (!err.message.includes(field)) text += ` (field: ${field})`;
  }
  showError(text);
}

// ---------------------------------------------------------------- applying the feed

function applyState(st) {
  S.loaded = true;
  S.now = st.now ?? null;
  S.clusterName = st.cluster_name || st.cluster?.cluster || '';
  S.scenarios = Array.isArray(st.scenarios) ? st.scenarios : [];
  S.paths = Array.isArray(st.paths) && st.paths.length ? st.paths : DEFAULT_PATHS;
  setCluster(st.cluster);
  S.proxy = st.proxy ?? null;
  S.regionProxies = st.region_proxies ?? {};
  S.buffer = st.buffer ?? null;
  S.load = st.load ?? null;
  S.drill = st.drill ?? null;
  S.series = normalizeSeries(st.series);
  S.events = Array.isArray(st.events) ? st.events.slice(-MAX_EVENTS) : [];
  const reports = Array.isArray(st.reports) ? st.reports : [];
  if (reports.length < S.reports.length) expanded.clear();
  S.reports = reports;
  populateControls();
  renderAll();
}

function normalizeSeries(series) {
  if (!Array.isArray(series)) return [];
  const out = series
    .filter((b) => b && isNum(b.t))
    .map((b) => ({ ...b, t: Math.round(b.t) }))
    .sort((a, b) => a.t - b.t);
  if (!out.length) return out;
  const last = out[out.length - 1].t;
  return out.filter((b) => b.t > last - WINDOW_S);
}

function appendBucket(b) {
  if (!b || !isNum(b.t)) return;
  const bucket = { ...b, t: Math.round(b.t) };
  const s = S.series;
  const last = s.length ? s[s.length - 1].t : -Infinity;
  if (bucket.t > last) s.push(bucket);
  else {
    const i = s.findIndex((x) => x.t === bucket.t);
    if (i >= 0) s[i] = bucket;
    else {
      s.push(bucket);
      s.sort((a, c) => a.t - c.t);
    }
  }
  const newest = s[s.length - 1].t;
  while (s.length && s[0].t <= newest - WINDOW_S) s.shift();
}

// A status that could not be read (cluster.error, no members) keeps the
// last known members on the page, marked stale.
function setCluster(c) {
  if (!c) {
    S.clusterStale = !!S.cluster;
    S.clusterError = '';
    return;
  }
  const members = Array.isArray(c.members) ? c.members : [];
  S.clusterError = c.error || '';
  if (c.error && !members.length && S.cluster?.members?.length) {
    S.clusterStale = true;
    return;
  }
  S.cluster = { ...c, members };
  S.clusterStale = false;
}

function applyTick(t) {
  if ('now' in t) S.now = t.now;
  if ('cluster' in t) setCluster(t.cluster);
  if ('proxy' in t) S.proxy = t.proxy;
  S.regionProxies = t.region_proxies ?? {};
  if ('buffer' in t) S.buffer = t.buffer;
  if ('load' in t) S.load = t.load;
  if ('drill' in t) S.drill = t.drill;
  if (t.bucket) appendBucket(t.bucket);
  renderHeader();
  renderTopology();
  renderStatus();
  charts.update();
}

function applyEvent(e) {
  if (!e) return;
  S.events.push(e);
  if (S.events.length > MAX_EVENTS) S.events.splice(0, S.events.length - MAX_EVENTS);
  renderEvents();
  charts.redrawMarkers();
}

function applyReport(r) {
  if (!r) return;
  S.reports.push(r);
  renderReports();
  renderStatus();
}

// ---------------------------------------------------------------- live feed

const feed = {
  es: null,
  retry: 0,
  backoff: 1000,
  lastMsg: 0,
  state: 'connecting',
};

function setFeed(state) {
  feed.state = state;
  $('feed-state').textContent = state;
  $('feed-dot').dataset.state = state;
}

function onFeedMessage() {
  feed.lastMsg = Date.now();
  feed.backoff = 1000;
  if (feed.state !== 'live') setFeed('live');
}

function parse(ev) {
  try {
    return JSON.parse(ev.data);
  } catch (err) {
    console.warn('lab feed: bad JSON in', ev.type, err);
    return null;
  }
}

function connect() {
  clearTimeout(feed.retry);
  if (feed.es) feed.es.close();
  setFeed(feed.lastMsg ? 'reconnecting' : 'connecting');
  const es = new EventSource('/lab/stream');
  feed.es = es;
  es.addEventListener('open', () => {
    if (feed.es !== es) return;
    onFeedMessage();
    if ($('message').textContent === AUTH_MSG) clearError();
  });
  es.addEventListener('state', (ev) => {
    const st = parse(ev);
    if (!st) return;
    onFeedMessage();
    applyState(st);
  });
  es.addEventListener('tick', (ev) => {
    const t = parse(ev);
    if (!t) return;
    onFeedMessage();
    applyTick(t);
  });
  es.addEventListener('event', (ev) => {
    onFeedMessage();
    applyEvent(parse(ev));
  });
  es.addEventListener('report', (ev) => {
    onFeedMessage();
    applyReport(parse(ev));
  });
  es.addEventListener('error', () => {
    if (feed.es !== es) return;
    if (es.readyState === EventSource.CONNECTING) {
      setFeed('reconnecting'); // the browser retries by itself
      return;
    }
    // CLOSED: the browser gave up (an HTTP error such as 401): find out
    // why, then try again later ourselves.
    es.close();
    setFeed('offline');
    diagnose();
    feed.retry = setTimeout(connect, feed.backoff);
    feed.backoff = Math.min(feed.backoff * 2, 15000);
  });
}

async function diagnose() {
  try {
    applyState(await api('GET', '/lab/state'));
  } catch (err) {
    if (err.status === 401) {
      setFeed('unauthorized');
      showError(AUTH_MSG);
    }
  }
}

// A tick arrives every second; a silent stream is a dead one.
setInterval(() => {
  if (feed.state !== 'live' && feed.state !== 'stalled') return;
  const quiet = Date.now() - feed.lastMsg;
  if (quiet > 15000) connect();
  else if (quiet > 5000 && feed.state === 'live') setFeed('stalled');
}, 1000);

// ---------------------------------------------------------------- rendering: header

function renderHeader() {
  const c = S.cluster;
  $('cluster-name').textContent = S.clusterName || c?.cluster || '—';
  $('cluster-primary').textContent = c?.primary || '—';
  $('cluster-generation').textContent = isNum(c?.generation) ? String(c.generation) : '—';
  $('cluster-paused').hidden = !c?.paused;
  document.title = S.clusterName ? `${S.clusterName} · holdfast lab` : 'holdfast lab';
}

// ---------------------------------------------------------------- rendering: topology

let topoSig = '';

function renderTopology() {
  const members = S.cluster?.members || [];
  // regions whole: role, lag, canary, health, problems, worst member and member_detail
  const sig = JSON.stringify([S.loaded, members, S.cluster?.regions, S.regionProxies, S.proxy, S.buffer, S.clusterStale, S.clusterError, S.cluster?.primary]);
  if (sig === topoSig) return;
  topoSig = sig;
  assignMemberColors();

  const note = $('topology-note');
  let noteText = `${members.length} members`;
  if (S.clusterError) noteText = `status unavailable: ${S.clusterError}${S.clusterStale ? ' — showing the last known' : ''}`;
  else if (S.clusterStale) noteText = 'status unavailable — showing the last known';
  note.textContent = noteText;
  note.title = noteText;
  note.classList.toggle('warn', S.clusterStale || !!S.clusterError);
  $('regions').classList.toggle('stale', S.clusterStale);

  const primaryRecords = members.find((m) => m.role === 'primary')?.records;
  const primaryTL = members.find((m) => m.role === 'primary')?.timeline;

  // region -> zone -> members, each level sorted by name
  const regions = new Map();
  for (const m of members) {
    const r = m.region || '(no region)';
    const z = m.zone || '(no zone)';
    if (!regions.has(r)) regions.set(r, new Map());
    const zones = regions.get(r);
    if (!zones.has(z)) zones.set(z, []);
    zones.get(z).push(m);
  }
  const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  const root = $('regions');
  const frag = document.createDocumentFragment();
  if (!members.length) {
    frag.append(h('div', { class: 'empty muted', text: S.cluster ? 'No members reported.' : 'Waiting for the cluster status…' }));
  }
  for (const rName of [...regions.keys()].sort(byName)) {
    const zones = regions.get(rName);
    const zoneEls = [...zones.keys()].sort(byName).map((zName) =>
      h(
        'div',
        { class: 'zone', 'data-testid': `zone-${rName}-${zName}` },
        h('div', { class: 'zone-title' }, h('span', { class: 'muted', text: 'zone ' }), zName),
        zones
          .get(zName)
          .sort((a, b) => byName(a.name, b.name))
          .map((m) => memberCard(m, primaryRecords, memberHealth(rName, m.name, primaryTL))),
      ),
    );
    frag.append(
      h(
        'div',
        { class: 'region', 'data-testid': `region-${rName}`, style: `flex: ${zones.size} 1 ${zones.size * 200}px` },
        h('div', { class: 'region-title' }, h('span', { class: 'muted', text: 'region ' }), rName),
        regionFacts(rName),
        h('div', { class: 'zones' }, zoneEls),
      ),
    );
  }
  root.replaceChildren(frag);
  renderProxy();
  renderBuffer();
}

const regionStatus = (name) => (S.cluster?.regions?.regions || []).find((r) => r.name === name);

// A region's problem is about a member when it starts with the member's
// name ("away-b is on timeline 4, …", "away-b: lag unknown").
const problemOf = (p, member) => p === member || p.startsWith(`${member} `) || p.startsWith(`${member}:`);

// memberHealth is a member's line from its region's member_detail: its
// timeline and lag to the primary, and whether the region's problems name
// it or its timeline differs from the primary's. null without the detail.
function memberHealth(region, name, primaryTL) {
  const rs = regionStatus(region);
  const d = (rs?.member_detail || []).find((x) => x.name === name);
  if (!d) return null;
  const problems = (rs.problems || []).filter((p) => problemOf(p, name));
  const tlOff = isNum(primaryTL) && primaryTL > 0 && isNum(d.timeline) && d.timeline > 0 && d.timeline !== primaryTL;
  if (tlOff && !problems.length) problems.push(`on timeline ${d.timeline}, the primary on ${primaryTL}`);
  const tl = `tl ${isNum(d.timeline) ? d.timeline : '—'}`;
  const lagS = isNum(d.lag_seconds) ? fmtDuration(d.lag_seconds * 1000) : '—';
  // the primary has no lag to itself: its timeline only
  const text = d.role === 'primary' ? tl : `${tl} · lag ${fmtBytes(d.lag_bytes)} / ${lagS}`;
  return {
    text,
    warn: problems.length > 0,
    title: problems.length ? problems.join('\n') : 'timeline, and lag to the primary: WAL bytes / time measured by the heartbeat row',
  };
}

// regionFacts is a region's line under its title: role, health (and the
// problems when unhealthy), lag to the primary (bytes, and seconds by the
// heartbeat), a standby region's worst member, its canary and its own proxy.
function regionFacts(name) {
  const rs = regionStatus(name);
  if (!rs) return null;
  const problems = rs.problems || [];
  const facts = [
    h('span', { class: `flag region-role region-${rs.role}`, 'data-testid': 'region-role', text: rs.role }),
    h('span', {
      class: `flag region-health ${rs.healthy ? 'region-healthy' : 'region-unhealthy'}`,
      'data-testid': 'region-health',
      'data-healthy': rs.healthy ? 'true' : 'false',
      title: problems.length ? problems.join('\n') : 'every member running, on the primary\'s timeline, within the lag bound',
      text: rs.healthy ? 'healthy' : 'unhealthy',
    }),
  ];
  if (rs.role !== 'primary') {
    const lagS = isNum(rs.lag_seconds) ? rs.lag_seconds : null;
    facts.push(
      h('span', {
        class: `small ${lagS !== null && lagS > 1 ? 'warn' : ''}`,
        'data-testid': 'region-lag',
        title: 'how far the standby leader is behind the primary: WAL bytes, and time measured by the heartbeat row',
        text: `lag ${fmtBytes(rs.lag_bytes)} · ${lagS === null ? '—' : fmtDuration(lagS * 1000)}`,
      }),
    );
    if (rs.worst_member) {
      facts.push(
        h('span', {
          class: 'small muted',
          'data-testid': 'region-worst',
          title: 'the member furthest behind the primary: the one a failover could have to promote if the others were lost too',
          text: `worst: ${rs.worst_member}`,
        }),
      );
    }
  }
  const c = rs.canary;
  if (c && c.active) {
    const failing = c.consecutive_failures > 0;
    facts.push(
      h('span', {
        class: `small ${failing ? 'bad' : ''}`,
        'data-testid': 'region-canary',
        title: c.waiting || c.last_error || 'probes the primary region with a write and a read',
        text: failing ? `canary: ${c.consecutive_failures} failed${c.waiting ? ' (waiting)' : ''}` : 'canary: ok',
      }),
    );
  }
  const p = S.regionProxies?.[name];
  if (p) {
    const clients = Object.values(p.clients || {}).reduce((a, b) => a + b, 0);
    facts.push(h('span', { class: `small ${p.state === 'serving' ? '' : 'warn'}`, title: "this region's own proxy", text: `proxy ${p.state || '?'} · ${fmtInt(clients)} clients` }));
  }
  const list = rs.healthy || !problems.length
    ? null
    : h('ul', { class: 'region-problems', 'data-testid': 'region-problems' }, problems.map((p) => h('li', { class: 'warn', 'data-testid': 'region-problem', text: p })));
  return [h('div', { class: 'region-facts' }, facts), list];
}

function stateClass(state) {
  const s = String(state || '').toLowerCase();
  if (s === 'running' || s === 'serving' || s === 'streaming') return 'ok';
  if (s === 'starting' || s === 'holding' || s === 'stopping' || s === 'paused') return 'warn';
  if (s === 'stopped' || s === 'unreachable' || s === 'crashed' || s === 'failed') return 'bad';
  return 'neutral';
}

function roleClass(role) {
  return role === 'primary' || role === 'replica' ? role : 'unknown';
}

function kv(label, value, cls, wide) {
  return h('div', { class: wide ? 'kv kv-wide' : 'kv' }, h('span', { class: 'k', text: label }), h('span', { class: `v ${cls || ''}`, text: value }));
}

function memberCard(m, primaryRecords, health) {
  const role = m.role || 'unknown';
  const flags = [];
  if (m.leader) flags.push(h('span', { class: 'flag flag-leader', title: 'holds the leader lease', text: 'leader' }));
  if (m.sync) flags.push(h('span', { class: 'flag flag-sync', title: 'in the synchronous set', text: 'sync' }));

  let records = m.records === null || m.records === undefined ? '—' : fmtInt(m.records);
  let recCls = m.records === null || m.records === undefined ? 'muted' : '';
  let recTitle = m.records === null || m.records === undefined ? 'unreachable' : 'rows of the drill table read from this member';
  if (isNum(m.records) && isNum(primaryRecords) && role !== 'primary' && m.records !== primaryRecords) {
    const d = m.records - primaryRecords;
    records += ` (${d > 0 ? '+' : ''}${fmtInt(d)})`;
    recCls = 'warn';
    recTitle = `differs from the primary by ${d}`;
  }
  const lagCls = isNum(m.lag_bytes) && m.lag_bytes > 0 ? 'warn' : '';
  const addr = m.host ? `${m.host}${m.port ? `:${m.port}` : ''}` : '';

  return h(
    'div',
    {
      class: `card member role-${roleClass(role)} state-${stateClass(m.state)}${health?.warn ? ' member-warn' : ''}`,
      'data-testid': `member-${m.name}`,
      'data-role': role,
      'data-state': m.state ?? '',
    },
    h(
      'div',
      { class: 'member-head' },
      h('span', { class: 'swatch', style: `background:${colorOf(m.name)}`, title: 'color of this member in the charts' }),
      h('span', { class: 'member-name', text: m.name }),
      h('span', { class: `role role-${roleClass(role)}`, 'data-testid': 'role', text: role }),
    ),
    h(
      'div',
      { class: 'member-state' },
      h('span', { class: `dot dot-${stateClass(m.state)}` }),
      h('span', { class: 'state-text', 'data-testid': 'state', text: m.state || 'unknown' }),
      flags,
    ),
    health
      ? h('div', {
          class: `member-tl-lag small ${health.warn ? 'warn' : 'muted'}`,
          'data-testid': 'member-timeline-lag',
          'data-warn': health.warn ? 'true' : 'false',
          title: health.title,
          text: health.text,
        })
      : null,
    h(
      'div',
      { class: 'kvs' },
      kv('timeline', isNum(m.timeline) ? String(m.timeline) : '—'),
      kv('lag', fmtBytes(m.lag_bytes), lagCls),
      kv('replay lag', isNum(m.replay_lag_ms) ? `${fmtNum(m.replay_lag_ms, 0)} ms` : '—'),
      kv('lag time', isNum(m.heartbeat_lag_ms) ? `${fmtNum(m.heartbeat_lag_ms, 0)} ms` : '—'),
      h(
        'div',
        { class: 'kv', title: recTitle },
        h('span', { class: 'k', text: 'records' }),
        h('span', { class: `v ${recCls}`, 'data-testid': 'records', text: records }),
      ),
    ),
    addr ? h('div', { class: 'addr muted', text: addr }) : null,
    m.last_error ? h('div', { class: 'last-error', title: m.last_error, text: m.last_error }) : null,
  );
}

function renderProxy() {
  const p = S.proxy;
  const el = $('proxy-card');
  if (!p) {
    el.dataset.state = 'absent';
    el.replaceChildren(h('div', { class: 'svc-head' }, h('span', { class: 'svc-name', text: 'Proxy' })), h('div', { class: 'muted small', text: S.loaded ? 'no status (not running or not answering)' : 'no status yet' }));
    return;
  }
  el.dataset.state = p.state || '';
  const w = p.writer || {};
  const clients = p.clients || {};
  el.replaceChildren(
    h(
      'div',
      { class: 'svc-head' },
      h('span', { class: 'svc-name', text: 'Proxy' }),
      h('span', { class: `badge badge-${stateClass(p.state)}`, 'data-testid': 'proxy-state', text: p.state || 'unknown' }),
    ),
    h(
      'div',
      { class: 'kvs' },
      kv('writer', w.member || '—'),
      kv('writer addr', w.addr || '—'),
      kv('waiting', fmtInt(p.waiting ?? 0), p.waiting > 0 ? 'warn' : ''),
      kv('clients', Object.keys(clients).length ? Object.entries(clients).map(([k, v]) => `${k} ${fmtInt(v)}`).join(' · ') : '0'),
    ),
  );
}

function renderBuffer() {
  const b = S.buffer;
  const el = $('buffer-card');
  if (!b) {
    el.replaceChildren(h('div', { class: 'svc-head' }, h('span', { class: 'svc-name', text: 'Write buffer' })), h('div', { class: 'muted small', text: S.loaded ? 'no status (not running or not answering)' : 'no status yet' }));
    return;
  }
  const draining = b.pending > 0;
  el.replaceChildren(
    h(
      'div',
      { class: 'svc-head' },
      h('span', { class: 'svc-name', text: 'Write buffer' }),
      h('span', { class: `badge badge-${b.dead > 0 ? 'bad' : draining ? 'warn' : 'ok'}`, text: b.dead > 0 ? 'dead letters' : draining ? 'draining' : 'drained' }),
    ),
    h(
      'div',
      { class: 'kvs' },
      kv('pending', fmtInt(b.pending ?? 0), draining ? 'warn' : ''),
      kv('dead', fmtInt(b.dead ?? 0), b.dead > 0 ? 'bad' : ''),
    ),
  );
}

// ---------------------------------------------------------------- rendering: controls and status

function fillSelect(sel, values) {
  const have = [...sel.options].map((o) => o.value);
  if (have.length === values.length && have.every((v, i) => v === values[i])) return false;
  const keep = sel.value;
  sel.replaceChildren(...values.map((v) => h('option', { value: v, text: v })));
  if (values.includes(keep)) sel.value = keep;
  return true;
}

let controlsSeeded = false;

function populateControls() {
  fillSelect($('load-path'), S.paths);
  fillSelect($('drill-path'), S.paths);
  fillSelect($('drill-scenario'), S.scenarios);
  if (!controlsSeeded && S.paths.length) {
    controlsSeeded = true;
    // a load already running (page reloaded): show its settings
    if (S.load?.running) {
      if (S.paths.includes(S.load.path)) $('load-path').value = S.load.path;
      if (isNum(S.load.rate)) $('load-rate').value = String(S.load.rate);
    }
  }
}

function renderStatus() {
  const l = S.load;
  const ls = $('load-status');
  if (l?.running) {
    ls.dataset.running = 'true';
    ls.dataset.path = l.path || '';
    ls.dataset.achieved = String(isNum(l.achieved_rate) ? l.achieved_rate : 0);
    ls.replaceChildren(
      h('span', { class: 'dot dot-ok pulse' }),
      h('strong', { text: 'running' }),
      ` · ${l.path || '?'} · `,
      h('span', { title: 'requested rate', text: `${fmtNum(l.rate)}/s requested` }),
      ' · ',
      h('span', { title: 'achieved rate', class: isNum(l.achieved_rate) && isNum(l.rate) && l.achieved_rate < 0.9 * l.rate ? 'warn' : '', text: `${fmtNum(l.achieved_rate)}/s achieved` }),
    );
  } else {
    ls.dataset.running = 'false';
    ls.dataset.path = '';
    ls.dataset.achieved = '0';
    ls.replaceChildren(h('span', { class: 'dot dot-neutral' }), h('span', { class: 'muted', text: 'idle — no load running' }));
  }

  const d = S.drill;
  const ds = $('drill-status');
  if (d?.running) {
    ds.dataset.running = 'true';
    ds.dataset.phase = d.phase || '';
    ds.replaceChildren(
      h('span', { class: 'dot dot-warn pulse' }),
      h('strong', { text: d.scenario || 'drill' }),
      ` via ${d.path || '?'} · `,
      h('span', { class: 'phase', text: d.phase || 'running' }),
      d.name ? h('span', { class: 'muted small', text: ` · ${d.name}` }) : null,
    );
  } else {
    ds.dataset.running = 'false';
    ds.dataset.phase = '';
    const last = S.reports[S.reports.length - 1];
    ds.replaceChildren(
      h('span', { class: 'dot dot-neutral' }),
      h('span', { class: 'muted', text: last ? `idle · last: ${last.scenario} via ${last.path}, ${last.lost_acked} lost, ${last.duplicates} duplicates` : 'no drill running' }),
    );
  }

  $('load-start').disabled = busy.load;
  $('load-stop').disabled = busy.load;
  $('drill-run').disabled = busy.drill || !!d?.running;
  $('switchover').disabled = busy.cluster;
  $('reset').disabled = busy.cluster;
}

// ---------------------------------------------------------------- rendering: events

function eventTime(e) {
  return parseTime(e.at ?? e.time);
}

function renderEvents() {
  const list = $('events');
  const items = [];
  for (let i = S.events.length - 1; i >= 0; i--) {
    const e = S.events[i];
    const at = eventTime(e);
    const prev = i > 0 ? eventTime(S.events[i - 1]) : NaN;
    const lapse = isNum(at) && isNum(prev) ? fmtSigned(at - prev) : '—';
    const kind = e.kind || 'event';
    const msg = e.message || '';
    const showMember = e.member && !msg.includes(e.member);
    items.push(
      h(
        'li',
        { class: `event ev-${eventTone(kind)}`, 'data-testid': 'event', 'data-kind': kind },
        h('span', { class: 'ev-time', text: fmtClock(at) }),
        ' ',
        h('span', { class: 'ev-lapse', title: 'since the previous event', text: lapse }),
        ' ',
        h('span', { class: 'ev-kind', text: kind }),
        ' ',
        h(
          'span',
          { class: 'ev-msg' },
          showMember ? h('strong', { text: `${e.member} ` }) : null,
          msg,
        ),
        isNum(e.since_fault_ms) ? ' ' : null,
        isNum(e.since_fault_ms) ? h('span', { class: 'ev-fault', title: 'since the fault was injected', text: `fault ${fmtSigned(e.since_fault_ms)}` }) : null,
      ),
    );
  }
  if (!items.length) items.push(h('li', { class: 'empty muted', text: 'No events yet.' }));
  list.replaceChildren(...items);
  $('events-count').textContent = S.events.length ? `${S.events.length} · newest first` : '';
}

function eventTone(kind) {
  const k = kind.toLowerCase();
  if (k.includes('fault') || k.includes('crash') || k.includes('lost') || k.includes('blocked') || k.includes('fail')) return 'bad';
  if (k.includes('promoted') || k.includes('done') || k.includes('rejoined') || k.includes('recover') || k.includes('restarted')) return 'good';
  if (k.includes('demoted') || k.includes('switchover') || k.includes('rewind') || k.includes('paused') || k.includes('drill') || k.includes('sync')) return 'warn';
  return 'neutral';
}

// ---------------------------------------------------------------- rendering: reports

function renderReports() {
  const body = $('reports');
  const rows = [];
  for (let i = S.reports.length - 1; i >= 0; i--) {
    const r = S.reports[i];
    const open = expanded.has(i);
    const bad = r.lost_acked > 0 || r.duplicates > 0;
    const toggle = () => {
      if (expanded.has(i)) expanded.delete(i);
      else expanded.add(i);
      renderReports();
    };
    const lat = r.latency_ms || {};
    rows.push(
      h(
        'tr',
        {
          class: `report-row${bad ? ' bad' : ''}${open ? ' open' : ''}`,
          'data-testid': 'report',
          'data-scenario': r.scenario,
          'data-path': r.path,
          'data-lost': String(r.lost_acked ?? ''),
          'data-duplicates': String(r.duplicates ?? ''),
          'data-errors': String(r.errors ?? ''),
          'data-unknown': String(r.unknown ?? ''),
          onclick: toggle,
        },
        h('td', { class: 'toggle' }, h('button', { type: 'button', class: 'chev', 'aria-expanded': String(open), 'aria-label': 'timeline', onclick: (ev) => { ev.stopPropagation(); toggle(); } })),
        h('td', { class: 'scenario', text: r.scenario }),
        h('td', { text: r.path }),
        h('td', { class: 'num', title: isNum(r.achieved_rate) ? `achieved ${fmtNum(r.achieved_rate)}/s` : null, text: `${fmtNum(r.rate)}/s` }),
        h('td', { class: 'num', text: fmtInt(r.requests) }),
        h('td', { class: 'num', text: fmtInt(r.ok) }),
        h('td', { class: `num ${r.errors > 0 ? 'warn' : ''}`, text: fmtInt(r.errors) }),
        h('td', { class: `num ${r.unknown > 0 ? 'warn' : ''}`, text: fmtInt(r.unknown) }),
        h('td', { class: `num ${r.lost_acked > 0 ? 'bad' : 'good'}`, text: fmtInt(r.lost_acked) }),
        h('td', { class: `num ${r.duplicates > 0 ? 'bad' : 'good'}`, text: fmtInt(r.duplicates) }),
        h('td', { class: 'num', text: fmtDuration(r.downtime_ms) }),
        h('td', { class: 'num', text: r.recovery_ms < 0 ? 'none' : fmtDuration(r.recovery_ms) }),
        h('td', { class: 'num', text: isNum(lat.p99) ? `${fmtNum(lat.p99)} ms` : '—' }),
      ),
    );
    if (open) rows.push(timelineRow(r));
  }
  body.replaceChildren(...rows);
  $('reports-empty').hidden = S.reports.length > 0;
}

// regionTimeline is a region outage's steps, since the outage.
function regionTimeline(rg) {
  if (!rg) return [];
  const at = (ms) => (isNum(ms) && ms >= 0 ? `T+${fmtDuration(ms)}` : 'did not happen');
  return [
    h('div', { class: 'kv kv-wide', 'data-testid': 'region-timeline' }, h('span', { class: 'k', text: 'region' }), h('span', { class: 'v', text: `${rg.from} → ${rg.to}` })),
    kv('outage', 'T+0'),
    kv('detected', at(rg.detected_ms)),
    kv('promoted', at(rg.promoted_ms)),
    kv('traffic restored', at(rg.traffic_restored_ms)),
  ];
}

function timelineRow(r) {
  const tl = Array.isArray(r.timeline) ? r.timeline : [];
  const lat = r.latency_ms || {};
  const items = tl.map((e) =>
    h(
      'li',
      { class: `tl-item ev-${eventTone(e.event || '')}` },
      h('span', { class: 'ev-time', text: fmtClock(parseTime(e.at)) }),
      ' ',
      h('span', { class: 'ev-fault', text: isNum(e.since_fault_ms) ? `T${fmtSigned(e.since_fault_ms)}` : '' }),
      ' ',
      h('span', { class: 'ev-msg', text: e.event || '' }),
    ),
  );
  return h(
    'tr',
    { class: 'timeline-row', 'data-testid': 'report-timeline' },
    h(
      'td',
      { colspan: '13' },
      h(
        'div',
        { class: 'tl-wrap' },
        h('ol', { class: 'tl' }, items.length ? items : h('li', { class: 'muted', text: 'no timeline' })),
        h(
          'div',
          { class: 'tl-facts' },
          kv('duration', isNum(r.duration_s) ? `${fmtNum(r.duration_s)} s` : '—'),
          kv('achieved', isNum(r.achieved_rate) ? `${fmtNum(r.achieved_rate)}/s` : '—'),
          kv('latency p50', isNum(lat.p50) ? `${fmtNum(lat.p50)} ms` : '—'),
          kv('latency p99', isNum(lat.p99) ? `${fmtNum(lat.p99)} ms` : '—'),
          kv('latency max', isNum(lat.max) ? `${fmtNum(lat.max)} ms` : '—'),
          ...regionTimeline(r.region),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------- charts

const AXIS = {
  stroke: '#8b95a7',
  font: '11px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif',
  grid: { stroke: 'rgba(139,149,167,0.12)', width: 1 },
  ticks: { stroke: 'rgba(139,149,167,0.25)', width: 1, size: 4 },
};

// Marked on every chart: the moments a drill is about. Only these kinds get
// a dashed line; everything else stays in the event list.
const MARKER_COLORS = {
  fault: '#ff7b72',
  partitioned: '#ff7b72',
  promoted: '#3fb950',
  healed: '#3fb950',
  switchover: '#e3b341',
  'switchover-done': '#e3b341',
};
const MARKER_RANK = { fault: 0, promoted: 1, switchover: 2, partitioned: 3, healed: 4 }; // label priority, by bare kind
const MARKER_ROWS = 3; // label rows at the top of a chart
const MARKER_ROW_H = 13; // CSS px
const MARKER_GAP = 6; // CSS px kept free between two labels in a row
const MARKER_HOVER_PX = 5; // cursor distance (CSS px) at which a line shows its event

function currentMarkers() {
  const out = [];
  const lastAt = new Map(); // label -> t (s) of the last marker with it
  for (const e of S.events) {
    const kind = e.kind || '';
    const color = MARKER_COLORS[kind];
    if (!color) continue;
    const ms = eventTime(e);
    if (!isNum(ms)) continue;
    const t = ms / 1000;
    const base = kind === 'switchover-done' ? 'switchover' : kind;
    const label = e.member ? `${base} ${e.member}` : base;
    // the lab and the cluster may both report one switchover: one line
    const prev = lastAt.get(label);
    lastAt.set(label, t);
    if (isNum(prev) && Math.abs(t - prev) < 2) continue;
    out.push({ t, ms, color, label, kind: base, message: e.message || '' });
  }
  return out;
}

// placeLabels picks a row for each label so that no two labels in a row
// overlap. Labels are placed by importance (fault, promoted, switchover,
// partitioned, healed), newest first within a kind; a label that fits in no
// row is tried again as its bare kind ("promoted" for "promoted home-a"),
// and failing that is hidden (row -1): its line stays, and hovering the
// line shows the event.
function placeLabels(items, plotLeft, plotRight, gap) {
  const rows = Array.from({ length: MARKER_ROWS }, () => []);
  const fit = (x, w) => {
    // right of the line, or left of it near the right edge
    let x0 = x + gap / 2;
    if (x0 + w > plotRight) x0 = x - gap / 2 - w;
    if (x0 < plotLeft) x0 = plotLeft;
    const x1 = x0 + w;
    for (let r = 0; r < rows.length; r++) {
      if (rows[r].every(([a, b]) => x1 + gap <= a || x0 >= b + gap)) {
        rows[r].push([x0, x1]);
        return { x0, r };
      }
    }
    return null;
  };
  const order = items.slice().sort((a, b) => MARKER_RANK[a.m.kind] - MARKER_RANK[b.m.kind] || b.m.t - a.m.t);
  for (const it of order) {
    it.row = -1;
    for (const [text, w] of [[it.m.label, it.w], [it.m.kind, it.kw]]) {
      const got = fit(it.x, w);
      if (got) {
        Object.assign(it, { text, w, lx: got.x0, row: got.r });
        break;
      }
    }
  }
  return items;
}

function markersPlugin() {
  let visible = []; // markers drawn last, for the hover readout
  let tip = null;
  return {
    hooks: {
      init: [
        (u) => {
          tip = h('div', { class: 'marker-tip', hidden: true });
          u.over.appendChild(tip);
        },
      ],
      draw: [
        (u) => {
          const markers = currentMarkers();
          const min = u.scales.x.min;
          const max = u.scales.x.max;
          visible = markers.filter((m) => m.t >= min && m.t <= max).sort((a, b) => a.t - b.t);
          if (!visible.length) return;
          const { ctx } = u;
          const { left, top, width, height } = u.bbox;
          const dpr = uPlot.pxRatio || window.devicePixelRatio || 1;
          ctx.save();
          ctx.beginPath();
          ctx.rect(left, top, width, height);
          ctx.clip();
          ctx.font = `${Math.round(10 * dpr)}px system-ui, sans-serif`;
          ctx.textBaseline = 'top';
          ctx.textAlign = 'left'; // uPlot leaves its axes' alignment set
          const items = visible.map((m) => ({
            m,
            x: Math.round(u.valToPos(m.t, 'x', true)) + 0.5,
            w: ctx.measureText(m.label).width,
            kw: ctx.measureText(m.kind).width,
          }));
          ctx.lineWidth = dpr;
          ctx.setLineDash([4 * dpr, 3 * dpr]);
          for (const it of items) {
            ctx.strokeStyle = it.m.color;
            ctx.beginPath();
            ctx.moveTo(it.x, top);
            ctx.lineTo(it.x, top + height);
            ctx.stroke();
          }
          ctx.setLineDash([]);
          placeLabels(items, left, left + width, MARKER_GAP * dpr);
          for (const it of items) {
            if (it.row < 0) continue;
            const y = top + (2 + it.row * MARKER_ROW_H) * dpr;
            ctx.fillStyle = 'rgba(17,22,29,0.85)';
            ctx.fillRect(it.lx - 2 * dpr, y - 1 * dpr, it.w + 4 * dpr, (MARKER_ROW_H - 1) * dpr);
            ctx.fillStyle = it.m.color;
            ctx.fillText(it.text, it.lx, y);
          }
          ctx.restore();
        },
      ],
      setCursor: [
        (u) => {
          if (!tip) return;
          const cx = u.cursor.left;
          let best = null;
          if (isNum(cx) && cx >= 0) {
            let bestD = MARKER_HOVER_PX + 0.001;
            for (const m of visible) {
              const d = Math.abs(u.valToPos(m.t, 'x') - cx);
              if (d < bestD) {
                bestD = d;
                best = m;
              }
            }
          }
          if (!best) {
            tip.hidden = true;
            return;
          }
          tip.replaceChildren(
            h('span', { class: 'marker-tip-label', style: `color:${best.color}`, text: best.label }),
            ' ',
            h('span', { class: 'marker-tip-time', text: fmtClock(best.ms) }),
            best.message ? h('div', { class: 'marker-tip-msg', text: best.message }) : null,
          );
          tip.hidden = false;
          const x = u.valToPos(best.t, 'x');
          const w = tip.offsetWidth;
          const plotW = u.over.clientWidth;
          tip.style.left = `${Math.max(0, x + 8 + w > plotW ? x - 8 - w : x + 8)}px`;
        },
      ],
    },
  };
}

function rangeZeroUp(minMax) {
  return (u, dmin, dmax) => {
    const hi = isNum(dmax) && dmax > 0 ? dmax : 0;
    if (hi <= 0) return [0, minMax];
    const [, max] = uPlot.rangeNum(0, hi, 0.1, true);
    return [0, Math.max(max, minMax)];
  };
}

let xMax = Math.floor(Date.now() / 1000);

class Chart {
  constructor(el, opts) {
    this.el = el;
    this.opts = opts; // { minMax, fmt, seriesFn(data) -> [{key,label,color,values, fill?}] }
    this.u = null;
    this.sig = '';
    new ResizeObserver(() => this.resize()).observe(el);
  }

  size() {
    return { width: Math.max(200, Math.floor(this.el.clientWidth)), height: 170 };
  }

  resize() {
    if (!this.u) return;
    const s = this.size();
    if (s.width !== this.u.width || s.height !== this.u.height) this.u.setSize(s);
  }

  set(xs, series) {
    const sig = series.map((s) => s.key).join('\u0000');
    const data = [xs, ...series.map((s) => s.values)];
    if (!this.u || sig !== this.sig) {
      if (this.u) this.u.destroy();
      this.sig = sig;
      const fmt = this.opts.fmt;
      this.u = new uPlot(
        {
          ...this.size(),
          pxAlign: false,
          cursor: { drag: { x: false, y: false }, points: { size: 6 } },
          legend: { live: true },
          scales: {
            x: { time: true, range: () => [xMax - WINDOW_S, xMax] },
            y: { range: rangeZeroUp(this.opts.minMax) },
          },
          axes: [
            { ...AXIS, space: 70, values: (u, vals) => vals.map(fmtTick) },
            { ...AXIS, size: 48, values: (u, vals) => vals.map((v) => fmt(v)) },
          ],
          series: [
            { label: 'time', value: (u, v) => (v == null ? '—' : fmtClock(v * 1000).slice(0, 8)) },
            ...series.map((s) => ({
              label: s.label,
              stroke: s.color,
              width: 1.5,
              fill: s.fill ? `${s.color}22` : undefined,
              points: { show: false },
              spanGaps: false,
              value: (u, v) => (v == null ? '—' : fmt(v)),
            })),
          ],
          plugins: [markersPlugin()],
        },
        data,
        this.el,
      );
    } else {
      this.u.setData(data);
    }
    // outside a hover the legend shows the newest bucket
    const c = this.u.cursor;
    if (c.left == null || c.left < 0) this.u.setLegend({ idx: xs.length - 1 });
  }

  redraw() {
    if (this.u) this.u.redraw(false, false);
  }
}

function fmtTick(v) {
  if (v == null) return '';
  const d = new Date(v * 1000);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return d.getSeconds() ? `${hm}:${pad(d.getSeconds())}` : hm;
}

const fmtRate = (v) => (Math.abs(v) >= 1000 ? `${(v / 1000).toFixed(1)}k` : fmtNum(v, v < 10 && !Number.isInteger(v) ? 1 : 0));

function sortOkKeys(keys) {
  const rank = (k) => (k === 'buffer' ? 1 : k === '?' ? 2 : 0);
  return keys.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

const charts = {
  ok: null,
  errors: null,
  waiting: null,
  p99: null,

  init() {
    this.ok = new Chart($('chart-ok'), { minMax: 10, fmt: fmtRate });
    this.errors = new Chart($('chart-errors'), { minMax: 5, fmt: fmtRate });
    this.waiting = new Chart($('chart-waiting'), { minMax: 5, fmt: fmtRate });
    this.p99 = new Chart($('chart-p99'), { minMax: 10, fmt: (v) => fmtNum(v, v < 10 ? 1 : 0) });
    this.update();
  },

  update() {
    if (!this.ok) return;
    assignMemberColors();
    const s = S.series;
    const now = parseTime(S.now);
    xMax = s.length ? s[s.length - 1].t : isNum(now) ? Math.floor(now / 1000) : Math.floor(Date.now() / 1000);
    const first = s.length ? Math.max(s[0].t, xMax - WINDOW_S + 1) : xMax;
    const n = xMax - first + 1;
    const byT = new Map(s.map((b) => [b.t, b]));
    const xs = new Array(n);
    const buckets = new Array(n);
    const keys = new Set();
    for (let i = 0; i < n; i++) {
      const t = first + i;
      xs[i] = t;
      const b = byT.get(t) || null;
      buckets[i] = b;
      if (b && b.ok) for (const k of Object.keys(b.ok)) keys.add(k);
    }
    const col = (f) => buckets.map((b) => (b ? f(b) : null));
    const num = (v) => (isNum(v) ? v : null);

    const okSeries = sortOkKeys([...keys]).map((k) => ({
      key: k,
      label: k === '?' ? 'unknown member' : k,
      color: colorOf(k),
      fill: true,
      values: col((b) => (b.ok && isNum(b.ok[k]) ? b.ok[k] : 0)),
    }));
    this.ok.set(xs, okSeries);
    this.errors.set(xs, [
      { key: 'errors', label: 'errors', color: '#ff7b72', fill: true, values: col((b) => num(b.errors) ?? 0) },
      { key: 'unknown', label: 'unknown', color: '#e3b341', fill: true, values: col((b) => num(b.unknown) ?? 0) },
    ]);
    this.waiting.set(xs, [{ key: 'waiting', label: 'waiting', color: '#39c5cf', fill: true, values: col((b) => num(b.waiting) ?? 0) }]);
    const okSum = (b) => (b.ok ? Object.values(b.ok).reduce((a, v) => a + (isNum(v) ? v : 0), 0) : 0);
    // a second without an acknowledged write has no latency (the server sends 0)
    this.p99.set(xs, [{ key: 'p99', label: 'p99 ms', color: '#c297ff', values: col((b) => (okSum(b) > 0 ? num(b.p99_ms) : null)) }]);
  },

  redrawMarkers() {
    for (const c of [this.ok, this.errors, this.waiting, this.p99]) c?.redraw();
  },
};

// ---------------------------------------------------------------- actions

async function run(kind, action, fn, fieldInputs) {
  busy[kind] = true;
  renderStatus();
  try {
    await fn();
    clearError();
  } catch (err) {
    reportApiError(action, err, fieldInputs);
  } finally {
    busy[kind] = false;
    renderStatus();
  }
}

function readRate(input, action) {
  const v = Number(input.value);
  if (input.value.trim() === '' || !Number.isFinite(v) || v <= 0) {
    input.classList.add('invalid');
    showError(`${action}: rate must be a positive number of requests per second`);
    return null;
  }
  return v;
}

function renderAll() {
  renderHeader();
  renderTopology();
  renderStatus();
  renderEvents();
  renderReports();
  charts.update();
}

function wire() {
  $('message-close').addEventListener('click', clearError);

  $('load-start').addEventListener('click', () => {
    const rate = readRate($('load-rate'), 'Start load');
    if (rate === null) return;
    const path = $('load-path').value;
    run('load', 'Start load', async () => {
      const l = await api('POST', '/lab/load', { path, rate });
      if (l && typeof l === 'object') S.load = l;
      showNotice(`load started: ${path} at ${rate}/s`);
    }, { rate: $('load-rate'), path: $('load-path') });
  });

  $('load-stop').addEventListener('click', () => {
    run('load', 'Stop load', async () => {
      const l = await api('DELETE', '/lab/load');
      S.load = l && typeof l === 'object' ? l : { running: false };
      showNotice('load stopped');
    });
  });

  $('drill-run').addEventListener('click', () => {
    const rate = readRate($('drill-rate'), 'Run drill');
    if (rate === null) return;
    const scenario = $('drill-scenario').value;
    const path = $('drill-path').value;
    const duration = $('drill-duration').value.trim();
    run('drill', 'Run drill', async () => {
      const res = await api('POST', '/lab/drills', { scenario, path, rate, duration });
      S.drill = { running: true, name: res?.name || '', scenario, path, phase: 'starting' };
      showNotice(`drill ${res?.name || scenario} started`);
    }, { scenario: $('drill-scenario'), path: $('drill-path'), rate: $('drill-rate'), duration: $('drill-duration') });
  });

  $('switchover').addEventListener('click', () => {
    run('cluster', 'Switchover', async () => {
      await api('POST', '/lab/switchover');
      showNotice('switchover requested');
    });
  });

  $('reset').addEventListener('click', () => {
    run('cluster', 'Reset', async () => {
      const res = await api('POST', '/lab/reset');
      if (res && Array.isArray(res.series)) applyState(res);
      else {
        S.series = [];
        S.events = [];
        S.reports = [];
        expanded.clear();
        if (res && typeof res.running === 'boolean') S.load = res;
        else if (S.load) S.load = { ...S.load, running: false, achieved_rate: 0 };
        renderAll();
      }
      showNotice('lab reset: load stopped, charts, events and reports cleared');
    });
  });

  for (const id of ['load-rate', 'drill-rate', 'drill-duration', 'load-path', 'drill-path', 'drill-scenario']) {
    $(id).addEventListener('input', () => $(id).classList.remove('invalid'));
  }
}

// ---------------------------------------------------------------- start

function start() {
  S.paths = DEFAULT_PATHS;
  populateControls();
  controlsSeeded = false; // seed again from the first real state
  wire();
  charts.init();
  renderAll();
  connect();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
