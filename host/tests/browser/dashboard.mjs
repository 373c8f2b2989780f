// Loads the dashboard in Debian's chromium, checks that every panel
// rendered and shows what the API returns, appends records to a source
// file of the running pipeline, waits for a panel to show the new figure,
// and saves a full-page screenshot. tests/dashboard.rs runs it; it prints
// one JSON line of what it checked and exits non-zero on a mismatch.
//
// node dashboard.mjs --url http://127.0.0.1:PORT --token T \
//   --append-from chunk.jsonl --append-to gifts.jsonl \
//   --watch-panel gift-type-totals --expect-total N --screenshot out.png

import { appendFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
}
for (const required of ["url", "screenshot"]) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(2);
  }
}
const headers = args.token ? { Authorization: `Bearer ${args.token}` } : {};
const WAIT = 120_000;

async function api(path) {
  const response = await fetch(args.url + path, { headers });
  return response.json();
}

function fail(message) {
  throw new Error(message);
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// What a panel shows, read from the DOM: its state, error text, headline
// total, and every figure of its number, table or chart readout.
function shown(id) {
  const node = document.getElementById(`panel-${id}`);
  const cells = (table) =>
    [...table.querySelectorAll("tbody tr")].map((tr) =>
      [...tr.querySelectorAll("td")].map((td) => JSON.parse(td.dataset.value)),
    );
  const table = node.querySelector(".body table");
  const total = node.querySelector("h2 .total");
  return {
    state: node.dataset.state,
    rendered: Number(node.dataset.rendered),
    error: node.querySelector(".error").textContent,
    total: total && total.dataset.value !== undefined ? JSON.parse(total.dataset.value) : null,
    numbers: [...node.querySelectorAll(".number .value")].map((v) => JSON.parse(v.dataset.value)),
    rows: table ? cells(table) : null,
    canvas: node.querySelector("canvas") !== null,
  };
}

const profile = mkdtempSync(join(tmpdir(), "apiary-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1920, height: 1080 },
});
const report = { compared: [], errors: [], updated: null };
try {
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  const query = args.token ? `?token=${encodeURIComponent(args.token)}` : "";
  await page.goto(`${args.url}/${query}`);

  const about = await api("/api/dashboard");
  const list = await api("/api/panels");
  const ids = list.map((p) => p.id);
  const charts = Object.fromEntries(list.map((p) => [p.id, p.chart]));
  await page.waitForFunction(
    (n) => {
      const panels = [...document.querySelectorAll("section.panel")];
      return panels.length === n && panels.every((p) => Number(p.dataset.rendered) > 0);
    },
    ids.length,
    { timeout: WAIT },
  );
  const domIds = await page.$$eval("section.panel", (nodes) => nodes.map((n) => n.dataset.panel));
  if (!same(domIds, ids)) fail(`the page shows panels ${domIds}, the API lists ${ids}`);

  // Every panel against the API: errors as errors, figures as figures.
  for (const id of ids) {
    if (id === "pipeline") continue;
    const data = await api(`/api/panels/${id}`);
    const dom = await page.evaluate(shown, id);
    if (data.error) {
      if (dom.state !== "error" || dom.error !== data.error) {
        fail(`panel ${id}: the API says "${data.error}", the page shows state ${dom.state} "${dom.error}"`);
      }
      report.errors.push(id);
      continue;
    }
    if (dom.state !== (data.rows.length ? "ok" : "empty")) fail(`panel ${id}: state ${dom.state}`);
    if (!data.rows.length) continue;
    const spec = list.find((p) => p.id === id);
    if (charts[id] === "number") {
      const ys = spec.y.length ? spec.y : data.columns.filter((c) => c !== spec.x);
      const expected = ys.map((c) => data.rows[0][data.columns.indexOf(c)]);
      if (!same(dom.numbers, expected)) fail(`panel ${id}: shows ${dom.numbers}, the API ${expected}`);
    } else {
      if (!same(dom.rows, data.rows)) {
        fail(`panel ${id}: shows rows ${JSON.stringify(dom.rows)}, the API ${JSON.stringify(data.rows)}`);
      }
      if (charts[id] !== "table" && about.charts && !dom.canvas) fail(`panel ${id}: no chart drawn`);
    }
    if (spec.total) {
      const column = spec.y.length ? spec.y[0] : data.columns.find((c) => c !== (spec.x || data.columns[0]));
      const at = data.columns.indexOf(column);
      const sum = data.rows.reduce((s, r) => s + r[at], 0);
      if (dom.total !== sum) fail(`panel ${id}: total ${dom.total}, the API's rows sum to ${sum}`);
    }
    report.compared.push(id);
  }
  const pipeline = await page.evaluate(shown, "pipeline");
  if (pipeline.state !== "ok" || !pipeline.rows || !pipeline.rows.length) fail("the pipeline panel shows no lanes");

  // New records: the watched panel follows the commit.
  if (args["append-from"]) {
    const panel = args["watch-panel"];
    const before = await page.evaluate(shown, panel);
    appendFileSync(args["append-to"], readFileSync(args["append-from"]));
    const expected = Number(args["expect-total"]);
    await page.waitForFunction(
      ([id, total]) => {
        const node = document.querySelector(`#panel-${id} h2 .total`);
        return node && node.dataset.value === JSON.stringify(total);
      },
      [panel, expected],
      { timeout: WAIT },
    );
    const after = await page.evaluate(shown, panel);
    const data = await api(`/api/panels/${panel}`);
    if (!same(after.rows, data.rows)) fail(`panel ${panel} after the update: rows differ from the API`);
    if (after.rendered <= before.rendered) fail(`panel ${panel} was not drawn again`);
    report.updated = { panel, before: before.total, after: after.total };
  }
  if (pageErrors.length) fail(`errors on the page: ${pageErrors.join("; ")}`);

  // Let the charts' transitions finish before the picture.
  await page.waitForTimeout(1500);
  await page.screenshot({ path: args.screenshot, fullPage: true });
  report.screenshot = args.screenshot;
  console.log(JSON.stringify(report));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
