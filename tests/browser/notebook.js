#!/usr/bin/env node
/* Drives classic Notebook 6 in Debian's Chromium (through playwright-core)
 * for tests/test_browser.py: everything goes through the UI (clicks, keys,
 * menus, dialogs) and every observation comes from the DOM.
 *
 *   node notebook.js BASE_URL TOKEN NOTEBOOK SCREENSHOT PROFILE_DIR
 *
 * BASE_URL is the server's root (http://127.0.0.1:PORT/), NOTEBOOK the
 * notebook's path under the server's notebook dir, SCREENSHOT where the
 * picture of the page goes after the steps (SCREENSHOT with .failed.png on
 * a failure), PROFILE_DIR a fresh Chromium profile (--user-data-dir).
 *
 * The notebook (written by test_browser.py) holds, in order:
 *   0 an empty cell, into which this script types print('hello')
 *   1 a matplotlib plot   2 x = 42   3 print('sleeping'); time.sleep(30)
 *   4 print x after the interrupt   5 print(x) after the restart
 *   6 a %%bash cell   7 an ipywidgets IntSlider (0..10, at 3), moved to
 *   its end with the End key   8 print the slider's value
 *
 * Prints one JSON object on stdout: {ok, failed_step, error, steps: {name:
 * {ms, ...observations}}, foreign_requests, page_errors, console}; exits 1
 * when a step fails (its error says what the DOM showed instead). The
 * assertions about what the cells printed are test_browser.py's.
 */
'use strict';

const path = require('path');
const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));

const [baseUrl, token, notebook, screenshot, profileDir] = process.argv.slice(2);
if (!profileDir) {
  console.error('usage: node notebook.js BASE_URL TOKEN NOTEBOOK SCREENSHOT PROFILE_DIR');
  process.exit(2);
}

const STEP_MS = 60000;     // bound of every wait (the box starts on a loaded machine)
const INTERRUPT_MS = 20000;
const RUN = 'button[data-jupyter-action="jupyter-notebook:run-cell-and-select-next"]';
const INTERRUPT = 'button[data-jupyter-action="jupyter-notebook:interrupt-kernel"]';

const results = { ok: false, steps: {}, foreign_requests: [], page_errors: [], console: [] };
let page = null;

// What the DOM shows of cell i: its prompt, its source and its outputs.
function cellState(i) {
  return page.evaluate((i) => {
    const cell = document.querySelectorAll('#notebook-container .cell')[i];
    if (!cell) return null;
    const cm = cell.querySelector('.CodeMirror');
    const outputs = [...cell.querySelectorAll('.output_area .output_subarea')].map((o) => ({
      classes: [...o.classList].filter((c) => c.startsWith('output_') && c !== 'output_subarea'),
      text: o.innerText,
      images: [...o.querySelectorAll('img')].map((img) => {
        const src = img.getAttribute('src') || '';
        // IPython 8.5's base64 of a figure ends with a newline (ipykernel's
        // does too); atob() skips whitespace
        const m = /^data:image\/png;base64,([\s\S]*)$/.exec(src);
        let bytes = 0, pngMagic = false;
        if (m) {
          const raw = atob(m[1]);
          bytes = raw.length;
          pngMagic = raw.slice(0, 8) === '\x89PNG\r\n\x1a\n';
        }
        return { src_start: src.slice(0, 22), png_bytes: bytes, png_magic: pngMagic,
                 complete: img.complete, width: img.naturalWidth, height: img.naturalHeight };
      }),
    }));
    return {
      prompt: cell.querySelector('.input_prompt').innerText.replace(/\s+/g, ' ').trim(),
      source: cm && cm.CodeMirror ? cm.CodeMirror.getValue() : null,
      outputs,
      text: outputs.map((o) => o.text).join(''),
      kernel_idle: document.querySelector('#kernel_indicator_icon').className === 'kernel_idle_icon',
    };
  }, i);
}

// Polls the DOM until pred(state of cell i) holds; a timeout names what
// was awaited and shows the cell as it was.
async function waitCell(i, what, pred, ms = STEP_MS) {
  const deadline = Date.now() + ms;
  let state = null;
  for (;;) {
    state = await cellState(i);
    if (state && pred(state)) return state;
    if (Date.now() > deadline)
      throw new Error(`cell ${i}: no ${what} within ${ms / 1000} s; the DOM shows ${JSON.stringify(state)}`);
    await page.waitForTimeout(100);
  }
}

const finished = (s) => /\[\d+\]/.test(s.prompt) && s.kernel_idle;

async function selectCell(i) {
  // A click on the prompt selects the cell in command mode.
  await page.locator('#notebook-container .cell').nth(i).locator('.input_prompt').click();
  await page.waitForFunction((i) => document.querySelectorAll('#notebook-container .cell')[i]
    .classList.contains('selected'), i, { timeout: STEP_MS });
}

async function runCell(i) {
  await selectCell(i);
  await page.click(RUN);
  return waitCell(i, 'finished run (In [n] and the kernel idle)', finished);
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    results.steps[name] = { ...(await fn()), ms: Date.now() - t0 };
  } catch (e) {
    results.steps[name] = { ms: Date.now() - t0 };
    e.step = name;
    throw e;
  }
}

async function main() {
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: '/usr/bin/chromium',
    headless: true, // playwright passes --headless: the new headless mode in this Chromium
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--disable-default-apps', '--no-default-browser-check'],
    viewport: { width: 1280, height: 2000 },
    timeout: STEP_MS,
  });
  try {
    page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const origin = new URL(baseUrl).origin;
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(origin) && !/^(data|blob|about):/.test(u)) results.foreign_requests.push(u);
    });
    page.on('pageerror', (e) => results.page_errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') results.console.push(m.text()); });

    await step('open', async () => {
      const url = new URL(`notebooks/${notebook}`, baseUrl);
      url.searchParams.set('token', token);
      await page.goto(url.href, { waitUntil: 'load' });
      await page.waitForSelector('#notebook-container .cell .CodeMirror');
      // The kernel is up when the indicator turns idle (it starts busy).
      await page.waitForSelector('#kernel_indicator_icon.kernel_idle_icon');
      return {
        title: await page.title(),
        kernel_name: (await page.innerText('.kernel_indicator_name')).trim(),
        cells: await page.locator('#notebook-container .cell').count(),
      };
    });

    await step('hello', async () => {
      // Typed into the empty first cell, run with Shift+Enter.
      await page.locator('#notebook-container .cell').nth(0).locator('.CodeMirror').click();
      await page.keyboard.type("print('hello')");
      await page.keyboard.press('Shift+Enter');
      return waitCell(0, 'finished run with output', (s) => finished(s) && s.outputs.length > 0);
    });

    await step('matplotlib', async () => {
      await runCell(1);
      // The <img> is in the DOM with the output; its decoding may lag.
      return waitCell(1, 'decoded <img>', (s) => s.outputs.some((o) => o.images.some((im) => im.complete && im.width > 0)));
    });

    await step('set_x', () => runCell(2));

    await step('interrupt', async () => {
      await selectCell(3);
      await page.click(RUN);
      // The cell is inside time.sleep once it has printed 'sleeping'.
      await waitCell(3, "'sleeping' on stdout", (s) => s.text.includes('sleeping'));
      await page.waitForTimeout(500);
      const t0 = Date.now();
      await page.click(INTERRUPT);
      const state = await waitCell(3, 'KeyboardInterrupt after the interrupt button',
        (s) => finished(s) && s.text.includes('KeyboardInterrupt'), INTERRUPT_MS);
      return { ...state, interrupt_ms: Date.now() - t0 };
    });

    await step('after_interrupt', () => runCell(4));

    await step('restart', async () => {
      // Record what the kernel notification area says from now on.
      await page.evaluate(() => {
        window.__notes = [];
        const area = document.querySelector('#notification_kernel');
        new MutationObserver(() => {
          const t = area.innerText.trim();
          if (t && window.__notes[window.__notes.length - 1] !== t) window.__notes.push(t);
        }).observe(area, { subtree: true, childList: true, characterData: true, attributes: true });
      });
      await page.click('#kernellink');
      await page.click('#restart_kernel > a');
      const dialog = page.locator('.modal-dialog');
      await dialog.waitFor({ state: 'visible' });
      const title = (await dialog.locator('.modal-title').innerText()).trim();
      await dialog.locator('.modal-footer button', { hasText: /^Restart$/ }).click();
      await dialog.waitFor({ state: 'detached' });
      // kernel_ready.Kernel shows "Kernel ready" once the new kernel answers.
      await page.waitForFunction(() => {
        const n = window.__notes;
        const r = n.indexOf('Restarting kernel');
        return r >= 0 && n.indexOf('Kernel ready', r) > r;
      }, null, { timeout: STEP_MS, polling: 50 });
      await page.waitForSelector('#kernel_indicator_icon.kernel_idle_icon');
      return { dialog_title: title, notifications: await page.evaluate(() => window.__notes) };
    });

    await step('after_restart', () => runCell(5));

    await step('bash', () => runCell(6));

    await step('widget', async () => {
      await runCell(7);
      const cell = page.locator('#notebook-container .cell').nth(7);
      const handle = cell.locator('.ui-slider-handle');
      await handle.waitFor({ state: 'visible' });
      await handle.focus();
      await page.keyboard.press('End');
      // the readout shows the new value once the view has set its model
      const readout = cell.locator('.widget-readout');
      await page.waitForFunction((el) => el && /10/.test(el.innerText || el.value || ''),
        await readout.elementHandle(), { timeout: STEP_MS });
      return { readout: (await readout.innerText()).trim(), ...(await cellState(7)) };
    });

    await step('widget_value', () => runCell(8));

    await step('screenshot', async () => {
      await page.evaluate(() => document.querySelector('#site').scrollTo(0, 0));
      await page.screenshot({ path: screenshot });
      return { path: screenshot };
    });
    results.ok = true;
  } catch (e) {
    results.failed_step = e.step || null;
    results.error = String(e && e.stack || e);
    if (page) {
      try { await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '.failed.png' }); } catch (_) { /* best effort */ }
    }
  } finally {
    await context.close().catch(() => {});
  }
}

const guard = setTimeout(() => {
  results.error = 'notebook.js: overall deadline (600 s) passed';
  console.log(JSON.stringify(results));
  process.exit(1);
}, 600000);

main().catch((e) => { results.error = String(e && e.stack || e); }).finally(() => {
  clearTimeout(guard);
  console.log(JSON.stringify(results));
  process.exit(results.ok ? 0 : 1);
});
