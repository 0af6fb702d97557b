// Browser end-to-end test of the OpenResty example app (examples/openresty)
// against the sandbox bank: Debian's chromium driven by playwright-core.
//
//   node spec/browser/e2e.mjs        (from anywhere; prints TAP)
//
// It starts the sandbox and the app with examples/openresty/run (random free
// ports on 127.0.0.1), opens the app, connects an account through the bank's
// OAuth page as the PSU alice, checks accounts and transactions, pays and
// checks the payment's final status, writes a screenshot of the final page
// to build/test-results/browser/final.png, and stops everything it started,
// also on failure. Both servers use the test CA (build/pki/ca.pem), which a
// headless chromium cannot simply be told to trust, so this test's browser
// context (and only it) sets ignoreHTTPSErrors.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const outDir = join(root, 'build', 'test-results', 'browser');
const runScript = join(root, 'examples', 'openresty', 'run');
const STEP_TIMEOUT = 15000;
const TOTAL_TIMEOUT = 150000;

const tests = [
  'the app home page offers "Connect account"',
  '"Connect account" leads to the bank\'s OAuth page',
  'the PSU logs in and approves; the browser returns to the app',
  'the app shows accounts with balances and recent transactions',
  'a payment is initiated, approved on the bank page, and reaches a final status',
  'back on the accounts page the payment and its status show; a screenshot of it is written',
];

let n = 0;
let failed = false;
function ok(name) { n += 1; console.log(`ok ${n} - ${name}`); }
function notOk(name, err) {
  n += 1;
  failed = true;
  console.log(`not ok ${n} - ${name}`);
  const text = String(err && err.stack ? err.stack : err);
  for (const line of text.split('\n').slice(0, 12)) console.log(`# ${line}`);
}

let work;
let started = false;
let browser;

function stopAll() {
  if (browser) {
    const b = browser;
    browser = undefined;
    // best effort; the process exit kills it anyway
    b.close().catch(() => {});
  }
  if (started) {
    started = false;
    try {
      execFileSync('sh', [runScript, 'stop', '--dir', work], { stdio: 'pipe', timeout: 30000 });
    } catch (e) {
      console.log(`# stopping the servers failed: ${e.message}`);
    }
  }
  if (work && !process.env.XS2A_KEEP_BROWSER_DIR) rmSync(work, { recursive: true, force: true });
}

process.on('SIGINT', () => { stopAll(); process.exit(130); });
process.on('SIGTERM', () => { stopAll(); process.exit(143); });

const watchdog = setTimeout(() => {
  console.log(`# the browser test ran longer than ${TOTAL_TIMEOUT / 1000} s; stopping`);
  for (let i = n; i < tests.length; i += 1) notOk(tests[i], 'timed out');
  stopAll();
  process.exit(1);
}, TOTAL_TIMEOUT);

// Logs in as the PSU on the bank's page and presses Approve.
async function approveOnBank(page, bankUrl) {
  await page.waitForURL((u) => u.toString().startsWith(bankUrl), { timeout: STEP_TIMEOUT });
  await page.locator('input[name="username"]').fill('alice');
  await page.locator('input[name="password"]').fill('alice-pass');
  await Promise.all([
    page.waitForURL((u) => !u.toString().startsWith(bankUrl), { timeout: STEP_TIMEOUT }),
    page.locator('button[name="decision"][value="approve"]').click(),
  ]);
}

async function main() {
  console.log(`1..${tests.length}`);
  mkdirSync(outDir, { recursive: true });
  work = mkdtempSync(join(tmpdir(), 'xs2a-browser-'));
  const { chromium } = await import('playwright-core');

  execFileSync('sh', [runScript, 'start', '--dir', work], { stdio: 'pipe', timeout: 60000 });
  started = true;
  const urls = Object.fromEntries(readFileSync(join(work, 'urls'), 'utf8').trim().split('\n')
    .map((l) => l.split('=', 2)));
  const appUrl = urls.app;
  const bankUrl = urls.bank;
  console.log(`# app ${appUrl}, bank ${bankUrl}`);

  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage'],
  });
  // a fresh profile per run: newContext is an isolated, in-memory profile
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  context.setDefaultTimeout(STEP_TIMEOUT);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT);
  const page = await context.newPage();
  let paymentStatus;

  const steps = [
    async () => {
      await page.goto(appUrl);
      await page.locator('#connect').waitFor();
      const cookies = await context.cookies(appUrl);
      const session = cookies.find((c) => c.name === 'tpp_session');
      if (!session) throw new Error('no session cookie');
      if (!session.httpOnly || session.sameSite !== 'Lax' || !session.secure) {
        throw new Error(`session cookie flags: ${JSON.stringify(session)}`);
      }
    },
    async () => {
      await page.locator('#connect').click();
      await page.waitForURL((u) => u.toString().startsWith(bankUrl));
      await page.locator('input[name="password"]').waitFor();
    },
    async () => {
      await approveOnBank(page, bankUrl);
      await page.waitForURL((u) => u.toString().startsWith(appUrl));
      await page.locator('#connected').waitFor();
    },
    async () => {
      const accounts = await page.locator('#accounts tr.account').count();
      if (accounts < 1) throw new Error('no accounts listed');
      const balance = await page.locator('#accounts td.balance').first().innerText();
      if (!/\d+\.\d+ [A-Z]{3}/.test(balance)) throw new Error(`balance looks wrong: ${balance}`);
      const txs = await page.locator('#transactions tr.transaction').count();
      if (txs < 1) throw new Error('no transactions listed');
    },
    async () => {
      await page.locator('#pay-button').click();
      await approveOnBank(page, bankUrl);
      await page.waitForURL((u) => u.toString().startsWith(`${appUrl}payment`));
      const status = (await page.locator('#payment-status').innerText()).trim();
      if (!['ACSC', 'ACCC', 'ACSP', 'ACTC'].includes(status)) {
        throw new Error(`payment status ${status} is not a successful final status`);
      }
      console.log(`# payment status ${status}`);
      paymentStatus = status;
    },
    async () => {
      await page.locator('#back').click();
      await page.locator('#connected').waitFor();
      const shown = (await page.locator('#payment-status').innerText()).trim();
      if (shown !== paymentStatus) throw new Error(`accounts page shows payment status ${shown}`);
      // the executed payment is in the ledger: the paying account lists it
      const txText = await page.locator('#transactions').innerText();
      if (!/Order 1001\s+-12\.34 EUR/.test(txText)) throw new Error('the payment is not among the transactions');
      const file = join(outDir, 'final.png');
      await page.screenshot({ path: file, fullPage: true });
      const png = readFileSync(file);
      if (png.length < 1000 || png.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG screenshot');
    },
  ];

  for (let i = 0; i < steps.length; i += 1) {
    if (failed) {
      notOk(tests[i], 'skipped: an earlier step failed');
      continue;
    }
    try {
      await steps[i]();
      ok(tests[i]);
    } catch (e) {
      notOk(tests[i], e);
      try {
        await page.screenshot({ path: join(outDir, 'failure.png'), fullPage: true });
        console.log(`# page at failure: ${page.url()} (screenshot build/test-results/browser/failure.png)`);
        const shown = await page.locator('#error, .error').first().innerText({ timeout: 1000 }).catch(() => '');
        if (shown) console.log(`# the page says: ${shown.replace(/\s+/g, ' ').slice(0, 300)}`);
      } catch (_) { /* ignore */ }
    }
  }
}

try {
  await main();
} catch (e) {
  for (let i = n; i < tests.length; i += 1) notOk(tests[i], i === n ? e : 'skipped: setup failed');
} finally {
  clearTimeout(watchdog);
  if (browser) await browser.close().catch(() => {});
  browser = undefined;
  stopAll();
}
process.exit(failed ? 1 : 0);
