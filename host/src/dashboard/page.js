// The dashboard page: lists the panels, fetches each one's rows, draws
// them with ECharts (or as tables when the build had no ECharts), and
// fetches again when the server says a checkpoint committed.
//
// Every panel element carries data-state (ok | empty | error) and
// data-rendered (how many times it was drawn); chart panels also hold
// their figures in a screen-reader table, so the figures are readable
// from the DOM.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const charts = typeof window.echarts !== "undefined";
const panels = new Map();
const numberFormat = new Intl.NumberFormat("zh-CN");
const compactFormat = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 0 });
const palette = ["#38d6ff", "#9b8cff", "#3ee69a", "#ffb547", "#ff6b9a", "#5b8cff", "#ffd84d", "#4de3c1", "#c77dff", "#ff8a5b"];

async function api(path) {
  const response = await fetch(path, { headers });
  let body;
  try {
    body = await response.json();
  } catch (e) {
    body = { error: response.status + " " + response.statusText };
  }
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

function text(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return numberFormat.format(value);
  return String(value);
}

// Keys (ids, grades, types) as they are: 1001 is a module, not 1,001 of something.
function raw(value) {
  return value === null || value === undefined ? "—" : String(value);
}

function isKey(column, spec) {
  return column === (spec.x || null) || column === spec.series || /(^|_)(id|type|grade)$/.test(column);
}

// Which columns a panel draws: x, series and the value columns.
function roles(spec, columns) {
  const x = spec.x || columns[0];
  const series = spec.series || null;
  const y = spec.y && spec.y.length ? spec.y : columns.filter((c) => c !== x && c !== series);
  return { x, series, y, at: (c) => columns.indexOf(c) };
}

function tableOf(columns, rows, spec) {
  const numeric = columns.map((_, i) => rows.some((r) => typeof r[i] === "number"));
  const key = columns.map((c) => isKey(c, spec || {}));
  const head = el("tr", {}, ...columns.map((c, i) => el("th", numeric[i] ? { class: "num" } : {}, c)));
  const body = rows.map((r) =>
    el("tr", {}, ...r.map((v, i) => el("td", { class: numeric[i] ? "num" : "", "data-value": JSON.stringify(v) }, key[i] ? raw(v) : text(v)))),
  );
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

const axisStyle = {
  axisLine: { lineStyle: { color: "#2a3a60" } },
  axisLabel: { color: "#9fb0d8", fontSize: 14 },
  splitLine: { lineStyle: { color: "rgba(42, 58, 96, 0.5)" } },
};

// Every category named; long names (room ids, times) slanted to fit.
function categoryLabels(categories) {
  const longest = Math.max(0, ...categories.map((c) => c.length));
  const long = categories.length > 4 && longest > 6;
  return { ...axisStyle.axisLabel, interval: categories.length <= 24 ? 0 : "auto", rotate: long ? 30 : 0, longest };
}

function chartOption(spec, data) {
  const { x, series, y, at } = roles(spec, data.columns);
  const rows = data.rows;
  const unit = spec.unit ? " " + spec.unit : "";
  const tooltip = { trigger: spec.chart === "pie" ? "item" : "axis", valueFormatter: (v) => text(v) + unit };
  const base = {
    backgroundColor: "transparent",
    color: palette,
    textStyle: { fontFamily: getComputedStyle(document.documentElement).fontFamily },
    grid: { left: 8, right: 16, top: 28, bottom: 8, containLabel: true },
    tooltip,
  };
  const categories = rows.map((r) => raw(r[at(x)]));
  // Slanted labels reach left of the axis: leave them room.
  const slantGrid = (labels) => ({ ...base.grid, left: labels.rotate ? Math.min(96, 6 * labels.longest) : base.grid.left });
  const labelFormat = rows.length > 6 ? (v) => compactFormat.format(v) : (v) => text(v);
  switch (spec.chart) {
    case "bar":
    case "line":
    case "area":
      return {
        ...base,
        legend: y.length > 1 ? { top: 0, textStyle: { color: "#9fb0d8", fontSize: 14 } } : undefined,
        grid: slantGrid(categoryLabels(categories)),
        xAxis: { type: "category", data: categories, ...axisStyle, axisLabel: categoryLabels(categories), splitLine: { show: false } },
        yAxis: { type: "value", ...axisStyle },
        series: y.map((c, i) => ({
          name: c,
          type: spec.chart === "bar" ? "bar" : "line",
          data: rows.map((r) => r[at(c)]),
          smooth: spec.chart !== "bar",
          areaStyle: spec.chart === "area" ? { opacity: 0.25 } : undefined,
          barMaxWidth: 42,
          label: spec.chart === "bar" && rows.length <= 12 ? { show: true, position: "top", color: "#dce6ff", fontSize: rows.length > 6 ? 12 : 14, formatter: (p) => labelFormat(p.value) } : undefined,
          itemStyle: spec.chart === "bar" ? {
            borderRadius: [4, 4, 0, 0],
            color: new echarts.graphic.LinearGradient(0, 0, 0, 1, [
              { offset: 0, color: palette[i % palette.length] },
              { offset: 1, color: "rgba(56, 214, 255, 0.15)" },
            ]),
          } : undefined,
        })),
      };
    case "pie":
      return {
        ...base,
        legend: { orient: "vertical", right: 0, top: "middle", textStyle: { color: "#9fb0d8", fontSize: 14 } },
        series: [{
          type: "pie",
          radius: ["40%", "66%"],
          center: ["40%", "52%"],
          itemStyle: { borderColor: "#0e1628", borderWidth: 2 },
          label: { color: "#dce6ff", fontSize: 13, formatter: "{d}%", overflow: "none" },
          labelLine: { length: 8, length2: 8 },
          data: rows.map((r) => ({ name: raw(r[at(x)]), value: r[at(y[0])] })),
        }],
      };
    case "grouped-bar": {
      const xs = [...new Set(rows.map((r) => raw(r[at(x)])))];
      const groups = [...new Set(rows.map((r) => raw(r[at(series)])))];
      return {
        ...base,
        legend: { top: 0, textStyle: { color: "#9fb0d8", fontSize: 14 } },
        grid: slantGrid(categoryLabels(xs)),
        xAxis: { type: "category", data: xs, ...axisStyle, axisLabel: categoryLabels(xs), splitLine: { show: false } },
        yAxis: { type: "value", ...axisStyle },
        series: groups.map((g) => ({
          name: g,
          type: "bar",
          data: xs.map((xv) => {
            const row = rows.find((r) => raw(r[at(x)]) === xv && raw(r[at(series)]) === g);
            return row ? row[at(y[0])] : null;
          }),
        })),
      };
    }
    case "heatmap": {
      const xs = [...new Set(rows.map((r) => raw(r[at(x)])))];
      const ys = [...new Set(rows.map((r) => raw(r[at(series)])))].sort((a, b) => a.localeCompare(b, "zh-CN", { numeric: true }));
      const values = rows.map((r) => r[at(y[0])]).filter((v) => typeof v === "number");
      return {
        ...base,
        tooltip: { position: "top", valueFormatter: (v) => text(v) + unit },
        grid: { left: 8, right: 16, top: 10, bottom: 44, containLabel: true },
        xAxis: { type: "category", data: xs, ...axisStyle, axisLabel: { ...axisStyle.axisLabel, interval: 0, rotate: 50, fontSize: 12 }, splitArea: { show: true } },
        yAxis: { type: "category", data: ys, name: series, nameTextStyle: { color: "#7f8db0" }, ...axisStyle, splitArea: { show: true } },
        visualMap: {
          min: values.length ? Math.min(...values) : 0,
          max: values.length ? Math.max(...values) : 1,
          calculable: true, orient: "horizontal", left: "center", bottom: 0, itemHeight: 300, itemWidth: 12,
          textStyle: { color: "#9fb0d8" },
          inRange: { color: ["#0f2a4a", "#1f6fb2", "#38d6ff", "#ffd84d", "#ff6b3d"] },
        },
        series: [{
          type: "heatmap",
          data: rows.map((r) => [xs.indexOf(raw(r[at(x)])), ys.indexOf(raw(r[at(series)])), r[at(y[0])]]),
          emphasis: { itemStyle: { borderColor: "#fff", borderWidth: 1 } },
        }],
      };
    }
  }
  return null;
}

function renderNumbers(panel, data) {
  const { y, at } = roles(panel.spec, data.columns);
  const first = data.rows[0];
  const unit = panel.spec.unit ? el("span", { class: "unit" }, panel.spec.unit) : "";
  const x = panel.spec.x;
  const figures = y.map((c) => {
    const value = el("div", { class: "value", "data-value": JSON.stringify(first[at(c)]) }, text(first[at(c)]));
    if (unit) value.append(unit.cloneNode(true));
    const label = x && at(x) >= 0 ? raw(first[at(x)]) + " · " + c : c;
    return el("div", { class: "number" }, value, el("div", { class: "label" }, label));
  });
  panel.body.replaceChildren(el("div", { class: "numbers" }, ...figures));
}

function renderPipeline(panel, data) {
  const lanes = tableOf(data.columns, data.rows);
  lanes.querySelectorAll("tbody tr").forEach((tr) => {
    // A file lane by its file name; the whole path on hover.
    const lane = tr.firstElementChild;
    lane.title = lane.textContent;
    lane.textContent = lane.textContent.replace(/^.*\//, "");
    const cell = tr.lastElementChild;
    const state = cell.textContent.split(" ")[0];
    cell.classList.add("state-" + state);
  });
  const plugins = (data.plugins || []).map((p) => el("span", { class: "chip" }, p.name, el("small", {}, p.version + " · " + p.kind)));
  const reloads = (data.reloads || []).map((r) => el("li", {}, el("span", {}, r.at), r.change));
  panel.body.replaceChildren(
    el("div", { class: "pipeline" },
      el("div", { class: "col" }, el("h3", {}, "Lanes"), lanes),
      el("div", { class: "col" }, el("h3", {}, "Plugins"), ...(plugins.length ? plugins : [el("span", { class: "empty" }, "—")])),
      el("div", { class: "col" }, el("h3", {}, "Recent reloads"), el("ul", { class: "reloads" }, ...(reloads.length ? reloads : [el("li", {}, "none")])))),
  );
}

function render(panel, data) {
  const spec = panel.spec;
  if (data.error) {
    panel.node.dataset.state = "error";
    panel.error.textContent = data.error;
    panel.total.textContent = "";
    return;
  }
  panel.node.dataset.state = data.rows.length ? "ok" : "empty";
  panel.error.textContent = "";
  if (spec.total) {
    const { y, at } = roles(spec, data.columns);
    const sum = data.rows.reduce((s, r) => s + (typeof r[at(y[0])] === "number" ? r[at(y[0])] : 0), 0);
    panel.total.textContent = text(sum) + (spec.unit ? " " + spec.unit : "");
    panel.total.dataset.value = JSON.stringify(sum);
  }
  if (spec.chart === "pipeline") return renderPipeline(panel, data);
  if (!data.rows.length) {
    if (panel.chart) { panel.chart.dispose(); panel.chart = null; }
    panel.body.replaceChildren(el("div", { class: "empty" }, "no rows yet"));
    return;
  }
  if (spec.chart === "number") return renderNumbers(panel, data);
  if (spec.chart === "table" || !charts) {
    if (panel.chart) { panel.chart.dispose(); panel.chart = null; }
    panel.body.replaceChildren(el("div", { class: "scroll" }, tableOf(data.columns, data.rows, spec)));
    return;
  }
  // A chart, plus its figures for screen readers.
  let holder = panel.body.querySelector(".chart");
  if (!holder || !panel.chart) {
    holder = el("div", { class: "chart" });
    panel.body.replaceChildren(holder);
    panel.chart = echarts.init(holder, "dark", { renderer: "canvas" });
  }
  // A table grows with its rows whatever its height: clip it in a box.
  const readout = panel.body.querySelector(".sr-only");
  const figures = el("div", { class: "sr-only" }, tableOf(data.columns, data.rows, spec));
  if (readout) readout.replaceWith(figures); else panel.body.append(figures);
  panel.chart.setOption(chartOption(spec, data), { replaceMerge: ["series", "xAxis", "yAxis"] });
}

async function refresh(panel) {
  if (panel.busy) { panel.again = true; return; }
  panel.busy = true;
  try {
    let data;
    try {
      data = await api("/api/panels/" + encodeURIComponent(panel.spec.id));
    } catch (e) {
      data = { error: e.message };
    }
    try {
      render(panel, data);
    } catch (e) {
      render(panel, { error: "cannot draw this panel: " + e.message });
    }
    panel.node.dataset.rendered = String(Number(panel.node.dataset.rendered || 0) + 1);
  } finally {
    panel.busy = false;
    if (panel.again) { panel.again = false; refresh(panel); }
  }
}

function refreshAll() {
  for (const panel of panels.values()) refresh(panel);
  document.body.dataset.updated = new Date().toISOString();
}

function setStatus(state, label) {
  document.getElementById("dot").className = "dot " + state;
  document.getElementById("status").textContent = label;
}

function listen() {
  const url = "/api/events" + (token ? "?token=" + encodeURIComponent(token) : "");
  const events = new EventSource(url);
  let connected = false;
  events.addEventListener("ready", () => {
    setStatus("live", "live");
    // Back after a lost connection: commits may have been missed.
    if (connected) refreshAll();
    connected = true;
  });
  events.addEventListener("commit", () => {
    const time = new Date().toLocaleTimeString("zh-CN", { hour12: false });
    setStatus("live", "updated " + time);
    refreshAll();
  });
  events.onerror = () => setStatus("down", "reconnecting…");
}

function tick() {
  document.getElementById("clock").textContent = new Date().toLocaleString("zh-CN", { hour12: false });
}

async function start() {
  tick();
  setInterval(tick, 1000);
  let about, list;
  try {
    about = await api("/api/dashboard");
    list = await api("/api/panels");
  } catch (e) {
    const banner = document.getElementById("banner");
    banner.textContent = "Cannot list the panels: " + e.message;
    banner.classList.add("shown");
    setStatus("down", "no access");
    document.body.dataset.failed = "true";
    return;
  }
  document.title = about.title;
  document.getElementById("title").textContent = about.title;
  if (!charts) {
    const banner = document.getElementById("banner");
    banner.textContent = "Charts are unavailable: this apiary was built without ECharts, so every panel is shown as a table.";
    banner.classList.add("shown");
  }
  const main = document.getElementById("panels");
  for (const spec of list) {
    const total = el("span", { class: "total" });
    const body = el("div", { class: "body" });
    const error = el("div", { class: "error" });
    const node = el("section", {
      class: "panel span-" + (spec.span || 1),
      id: "panel-" + spec.id,
      "data-panel": spec.id,
      "data-chart": spec.chart,
      "data-rendered": "0",
    }, el("h2", {}, spec.title, total), body, error);
    main.append(node);
    panels.set(spec.id, { spec, node, body, error, total, chart: null, busy: false, again: false });
  }
  window.addEventListener("resize", () => panels.forEach((p) => p.chart && p.chart.resize()));
  refreshAll();
  listen();
  // Rates and lag move without commits too.
  setInterval(() => panels.has("pipeline") && refresh(panels.get("pipeline")), 2000);
}

start();
