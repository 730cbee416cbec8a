// The example app in a real browser (headless Chromium, driven by playwright-core): opens pages,
// submits an edit through the form, and checks that the page then shows the edit and that the
// pages and fragments the edit did not touch were served from the cache.
//
//   node browser/edit.cjs http://127.0.0.1:3000     (CHROMIUM=/usr/bin/chromium by default)
const { chromium } = require('playwright-core');

const base = process.argv[2] || 'http://127.0.0.1:3000';

function check(ok, what) {
  if (!ok) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const page = await browser.newPage();
  const visit = async (path) => {
    const res = await page.goto(base + path);
    return { status: res.status(), xcache: (await res.allHeaders())['x-cache'] };
  };
  const rendered = async (category) => page.getAttribute(`#cat-${category}`, 'data-rendered');

  for (const path of ['/post/1', '/post/3', '/category/1', '/category/2']) {
    await visit(path);
    const again = await visit(path);
    check(again.status === 200 && again.xcache === 'hit', `${path} is served from the cache on the second visit`);
  }
  await visit('/');
  const before = { c1: await rendered(1), c2: await rendered(2) };
  await visit('/');
  check((await rendered(1)) === before.c1 && (await rendered(2)) === before.c2, 'the home page fragments are cached');

  // The edit, as a user makes it: the post page's Edit link, the form, Save.
  await visit('/post/1');
  await page.click('#edit');
  const title = `Edited in a browser ${Date.now()}`;
  await page.fill('#title-input', title);
  const [after] = await Promise.all([page.waitForNavigation(), page.click('#save')]);
  check(new URL(page.url()).pathname === '/post/1', 'the form goes back to the post');
  check((await page.textContent('#title')) === title, 'the post page shows the edit');
  check((await after.allHeaders())['x-cache'] === 'miss', 'the edited page was rendered again (x-cache: miss)');

  const other = await visit('/post/3');
  check(other.xcache === 'hit', 'another post page is still served from the cache');
  const otherCategory = await visit('/category/2');
  check(otherCategory.xcache === 'hit', 'the other category page is still served from the cache');
  const ownCategory = await visit('/category/1');
  check(ownCategory.xcache === 'miss' && (await page.textContent('#posts')).includes(title), 'the edited post\'s category page shows the edit');
  await visit('/');
  check((await page.textContent('#cat-1')).includes(title) && (await rendered(1)) !== before.c1, 'the home page fragment of category 1 shows the edit');
  check((await rendered(2)) === before.c2, 'the home page fragment of category 2 is still the cached one');
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
