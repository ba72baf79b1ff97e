#!/usr/bin/env node
// Browser test of the holdfast lab dashboard against a running `holdfast up`.
//
//   node e2e/dashboard.mjs --url 'http://127.0.0.1:18080/?token=...' --screenshot /tmp/dashboard.png [--assets ../dist]
//
// --assets serves app.js and app.css from that directory instead of the
// server's (embedded) copies: to try a fresh `npm run build` against a
// server binary built before it.
//
// Opens the dashboard in headless Chromium (env CHROMIUM, default
// /usr/bin/chromium), checks that every region shows its health and every
// member card its timeline and lag, starts a load through the buffer, runs a
// kill-primary drill through the buffer, and checks the report (no acknowledged write
// lost, no duplicate, no error) and the timeline (a promotion). Takes a
// full-page screenshot, stops the load, prints one line and exits 0. On any
// failed check or timeout it prints what was expected and what was seen,
// saves the screenshot as <path>.failed.png and exits 1.
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function usage(msg) {
  if (msg) console.error(`dashboard e2e: ${msg}`);
  console.error('usage: node e2e/dashboard.mjs --url <dashboard URL with ?token=...> --screenshot <png path> [--assets <dist dir>]');
  process.exit(2);
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--(url|screenshot|assets)(?:=(.*))?$/.exec(a);
    if (!m) usage(`unknown argument ${a}`);
    const v = m[2] ?? argv[++i];
    if (v === undefined || v === '') usage(`--${m[1]} needs a value`);
    out[m[1]] = v;
  }
  if (!out.url) usage('--url is required');
  if (!out.screenshot) usage('--screenshot is required');
  return out;
}

const args = parseArgs(process.argv.slice(2));
const failedShot = args.screenshot.replace(/\.png$/i, '') + '.failed.png';

class CheckFailed extends Error {
  constructor(step, expected, seen) {
    super(`${step}: expected ${expected}; saw ${seen}`);
    this.step = step;
  }
}

// poll calls probe() (-> {ok, seen}) until ok or the deadline; on timeout
// it fails the step with the last thing seen. probe may also return
// {fail: '...'} to stop at once (an API error on the page, say).
async function poll(step, expected, timeoutMs, probe, intervalMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let seen = 'nothing yet';
  for (;;) {
    let r;
    try {
      r = await probe();
    } catch (err) {
      r = { ok: false, seen: `error: ${err.message.split('\n')[0]}` };
    }
    if (r.seen !== undefined) seen = r.seen;
    if (r.ok) return r;
    if (r.fail) throw new CheckFailed(step, expected, r.fail);
    if (Date.now() >= deadline) throw new CheckFailed(step, `${expected} within ${Math.round(timeoutMs / 1000)} s`, seen);
    await new Promise((res) => setTimeout(res, intervalMs));
  }
}

function check(step, cond, expected, seen) {
  if (!cond) throw new CheckFailed(step, expected, seen);
}

const started = Date.now();
const pageErrors = [];
let browser;
let page;
let loadStarted = false;

async function text(testid) {
  const loc = page.getByTestId(testid);
  if ((await loc.count()) === 0) return '';
  return ((await loc.first().textContent()) || '').trim();
}

async function attr(testid, name) {
  return page.getByTestId(testid).first().getAttribute(name);
}

async function main() {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // As root chromium needs --no-sandbox; the rest keeps it off the
    // network (this machine's is closed: background fetches only fail).
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  page = await context.newPage();
  if (args.assets) {
    for (const [f, type] of [['app.js', 'text/javascript'], ['app.css', 'text/css']]) {
      await page.route((u) => u.pathname.endsWith(`/${f}`), (route) => route.fulfill({ path: join(args.assets, f), contentType: type }));
    }
  }
  page.setDefaultTimeout(30_000);
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') pageErrors.push(msg.text());
  });

  // 1. the page, the live feed and a primary
  const resp = await page.goto(args.url, { waitUntil: 'domcontentloaded' });
  check('open dashboard', resp && resp.ok(), `HTTP 200 from ${args.url.replace(/token=[^&]*/, 'token=…')}`, resp ? `HTTP ${resp.status()}` : 'no response');
  await poll('live feed', 'feed-state "live"', 30_000, async () => {
    const s = await text('feed-state');
    const msg = await text('message');
    const seen = `feed-state "${s}"${msg ? `, message "${msg}"` : ''}`;
    if (s === 'unauthorized') return { fail: seen }; // no cookie: waiting won't help
    return { ok: s === 'live', seen };
  });
  const primaryCard = page.locator('[data-testid^="member-"][data-role="primary"]');
  const primaryBefore = await poll('primary', 'a member card with data-role="primary"', 60_000, async () => {
    const n = await primaryCard.count();
    const roles = await page.locator('[data-testid^="member-"][data-role]').evaluateAll((els) => els.map((e) => `${e.dataset.testid}=${e.dataset.role}/${e.dataset.state}`));
    return { ok: n > 0, seen: roles.length ? roles.join(', ') : 'no member cards', value: n > 0 ? (await primaryCard.first().getAttribute('data-testid')).slice('member-'.length) : '' };
  });

  // 1b. each region's health, each member's timeline and lag
  await poll('region health', 'a region-health flag (healthy/unhealthy, problems listed when unhealthy) in every region and a member-timeline-lag line on every member card', 30_000, async () => {
    const regions = await page.locator('.region').evaluateAll((els) =>
      els.map((r) => {
        const flag = r.querySelector('[data-testid="region-health"]');
        return { id: r.dataset.testid, health: flag ? flag.textContent.trim() : null, problems: r.querySelectorAll('[data-testid="region-problems"] li').length };
      }),
    );
    const cards = await page.locator('[data-testid^="member-"][data-role]').evaluateAll((els) =>
      els.map((c) => ({ id: c.dataset.testid, line: c.querySelector('[data-testid="member-timeline-lag"]')?.textContent.trim() ?? null })),
    );
    const regionsOk = regions.length > 0 && regions.every((r) => r.health === 'healthy' || (r.health === 'unhealthy' && r.problems > 0));
    const cardsOk = cards.length > 0 && cards.every((c) => c.line !== null && /^tl \d+( · lag .+)?$/.test(c.line));
    const seen = `regions [${regions.map((r) => `${r.id}: ${r.health ?? 'no region-health'}${r.problems ? ` (${r.problems} problems)` : ''}`).join(', ')}]; ` +
      `members [${cards.map((c) => `${c.id}: ${c.line === null ? 'no member-timeline-lag' : JSON.stringify(c.line)}`).join(', ')}]`;
    return { ok: regionsOk && cardsOk, seen };
  });

  // 2. load through the buffer
  await page.getByTestId('load-path').selectOption('buffer');
  await page.getByTestId('load-rate').fill('200');
  await page.getByTestId('load-start').click();
  loadStarted = true;
  await poll('load', 'load running on path buffer with achieved rate > 0 and successes charted', 60_000, async () => {
    const running = await attr('load-status', 'data-running');
    const path = await attr('load-status', 'data-path');
    const achieved = Number(await attr('load-status', 'data-achieved'));
    const okSeries = await page.locator('[data-testid="chart-ok"] .u-legend .u-series').count(); // the first is time
    const msg = await text('message');
    const seen = `load status "${await text('load-status')}" (running=${running}, path=${path}, achieved=${achieved}), ${Math.max(0, okSeries - 1)} success series${msg ? `, message "${msg}"` : ''}`;
    if (msg && running !== 'true') return { fail: seen };
    return { ok: running === 'true' && path === 'buffer' && achieved > 0 && okSeries > 1, seen };
  });

  // 3. kill-primary drill through the buffer
  const reportSel = '[data-testid="report"][data-scenario="kill-primary"][data-path="buffer"]';
  const before = await page.locator(reportSel).count();
  await page.getByTestId('drill-scenario').selectOption('kill-primary');
  await page.getByTestId('drill-path').selectOption('buffer');
  await page.getByTestId('drill-rate').fill('200');
  await page.getByTestId('drill-duration').fill('15s');
  await page.getByTestId('drill-run').click();
  await poll('drill start', 'the drill running (or its report)', 30_000, async () => {
    const running = await attr('drill-status', 'data-running');
    const n = await page.locator(reportSel).count();
    const msg = await text('message');
    const seen = `drill status "${await text('drill-status')}"${msg ? `, message "${msg}"` : ''}`;
    if (msg && running !== 'true' && n <= before) return { fail: seen };
    return { ok: running === 'true' || n > before, seen };
  });
  await poll('drill report', `a new report row with data-scenario=kill-primary and data-path=buffer (had ${before})`, 180_000, async () => {
    const n = await page.locator(reportSel).count();
    const msg = await text('message');
    return { ok: n > before, seen: `${n} such rows; drill status "${await text('drill-status')}"${msg ? `; message "${msg}"` : ''}` };
  }, 500);
  const row = page.locator(reportSel).first(); // newest first
  const got = {
    lost: await row.getAttribute('data-lost'),
    duplicates: await row.getAttribute('data-duplicates'),
    errors: await row.getAttribute('data-errors'),
  };
  const cells = (await row.locator('td').allTextContents()).map((s) => s.trim());
  const seenRow = `lost=${got.lost} duplicates=${got.duplicates} errors=${got.errors} [${cells.slice(1).join(' | ')}]`;
  check('report', got.lost === '0', 'data-lost "0"', seenRow);
  check('report', got.duplicates === '0', 'data-duplicates "0"', seenRow);
  check('report', got.errors === '0', 'data-errors "0"', seenRow);

  // 4. the failover on the timeline
  const promoted = page.getByTestId('event').filter({ hasText: 'promoted' });
  await poll('timeline', 'an event whose text contains "promoted"', 15_000, async () => {
    const n = await promoted.count();
    const all = await page.getByTestId('event').allTextContents();
    return { ok: n > 0, seen: all.length ? `${all.length} events, newest: ${all.slice(0, 5).map((s) => JSON.stringify(s.replace(/\s+/g, ' ').trim())).join(', ')}` : 'no events' };
  });
  const promotedText = ((await promoted.first().textContent()) || '').replace(/\s+/g, ' ').trim();
  const primaryAfter = await page.locator('[data-testid^="member-"][data-role="primary"]').first().getAttribute('data-testid').catch(() => null);

  // 5. let the charts draw the failover, then the picture
  await page.waitForTimeout(4000);
  await page.screenshot({ path: args.screenshot, fullPage: true });

  // 6. stop the load
  await page.getByTestId('load-stop').click();
  await poll('stop load', 'load status not running', 30_000, async () => {
    const running = await attr('load-status', 'data-running');
    return { ok: running === 'false', seen: `load status "${await text('load-status')}"` };
  });
  loadStarted = false;

  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `dashboard e2e ok: kill-primary via buffer: lost 0, duplicates 0, errors 0 [${cells.slice(1).join(' | ')}]; ` +
      `primary ${primaryBefore.value || '?'} -> ${primaryAfter ? primaryAfter.slice('member-'.length) : '?'} ("${promotedText}"); ` +
      `screenshot ${args.screenshot}; ${secs} s`,
  );
}

try {
  await main();
  await browser.close();
  process.exit(0);
} catch (err) {
  const what = err instanceof CheckFailed ? err.message : `unexpected error: ${err.stack || err}`;
  console.error(`dashboard e2e FAILED: ${what}`);
  if (page) {
    const msg = await text('message').catch(() => '');
    if (msg) console.error(`  message on the page: ${msg}`);
    if (pageErrors.length) console.error(`  page errors: ${[...new Set(pageErrors)].slice(-5).join(' / ')}`);
    await page
      .screenshot({ path: failedShot, fullPage: true })
      .then(() => console.error(`  screenshot: ${failedShot}`))
      .catch((e) => console.error(`  no screenshot: ${e.message.split('\n')[0]}`));
    if (loadStarted) await page.getByTestId('load-stop').click({ timeout: 5000 }).catch(() => {});
  }
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
