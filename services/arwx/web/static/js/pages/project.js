// Project: the goal, the Experiments chart, sessions, the integrity badge, the runs table and
// charts of every metric of the runs picked in it (system/* in their own collapsible section).
import { api, enc, qs } from "../api.js";
import { ChartSet } from "../charts.js";
import { errorBox, fmtAgo, fmtNum, fmtTime, h, replace, route } from "../dom.js";
import { experimentsTable, frontierChart } from "../frontier.js";
import { goalText } from "./projects.js";

const PAGE = 50; // runs per table page
const AUTO_PICK = 10; // runs charted until someone picks
const MAX_PICK = 100; // the charts API's bound
const BADGE_RUNS = 100; // receipts summed in the badge (one request: the API's bound)
const METRIC_COLUMNS = 4; // latest values shown in the table (and the only ones asked for)
const REFRESH_MS = 2500;

export async function render(view, name) {
  const [project, progress, sessions] = await Promise.all([
    api(`/v1/projects/${enc(name)}`),
    api(`/v1/projects/${enc(name)}/progress`),
    api(`/v1/projects/${enc(name)}/sessions` + qs({ limit: 20 })),
  ]);
  const st = {
    project, status: "", prefix: "", cursors: [null], page: 0, rows: [], next: null,
    sort: null, desc: false, picked: new Map(), auto: true, charts: null, chartKeys: "", timer: null,
    keys: new Set(), shown: remembered(name, project),
    opts: { x: "step", writers: "per", smoothing: 0 },
  };

  const frontierEl = h("div", { id: "frontier-chart", class: "chart-box" });
  const badge = h("div", { id: "integrity", class: "badge-line muted" }, "Integrity: …");
  const tableBox = h("div", { id: "runs-box" });
  const chartsBox = h("div", { id: "charts" });
  const pager = h("div", { class: "pager" });

  const winner = project.winner
    ? h("a", { id: "winner", class: "badge winner", href: route("a", name, project.winner.name) },
      `winner: ${project.winner.name} ${project.winner.version}`)
    : null;
  replace(view,
    h("h1", {}, name, " ", winner),
    h("p", { id: "goal" }, `Goal: ${goalText(project)}. Best: ${fmtNum(project.best)}`,
      project.target_met ? h("span", { class: "badge ok" }, "target met") : null,
      `  ·  ${fmtNum(project.runs)} runs, ${fmtNum(project.running)} running  ·  `,
      h("a", { href: route("a", name) }, "Artifacts")),
    h("section", { id: "experiments-section" },
      h("h2", {}, "Experiments"), frontierEl,
      progress.points && progress.points.length ? h("details", {}, h("summary", {}, `${progress.points.length} decided experiments`), experimentsTable(progress)) : null),
    h("section", { id: "sessions-section" }, h("h2", {}, "Sessions"), sessionsTable(sessions.sessions || [])),
    h("section", { id: "runs-section" }, h("h2", {}, "Runs"), filters(), tableBox, pager),
    h("section", { id: "charts-section" }, h("h2", {}, "Charts"), badge, chartControls(), chartsBox));
  frontierChart(frontierEl, progress);

  function filters() {
    const status = h("select", { id: "status-filter", "aria-label": "status", onchange: (e) => { st.status = e.target.value; firstPage(); } },
      ["", "running", "finished", "failed", "crashed", "killed"].map((s) => h("option", { value: s }, s || "any status")));
    let t = null;
    const prefix = h("input", { id: "name-filter", placeholder: "name starts with…", oninput: (e) => {
      clearTimeout(t);
      t = setTimeout(() => { st.prefix = e.target.value; firstPage(); }, 250);
    } });
    return h("div", { class: "controls" }, status, prefix,
      h("button", { id: "pick-none", class: "link", onclick: () => { st.auto = false; st.picked.clear(); drawTable(); updateCharts(); } }, "clear selection"),
      h("button", { id: "pick-page", class: "link", onclick: () => {
        st.auto = false;
        for (const r of st.rows) if (st.picked.size < MAX_PICK) st.picked.set(r.id, r);
        drawTable();
        updateCharts();
      } }, "pick this page"),
      h("button", { id: "pick-auto", class: "link", onclick: () => { st.auto = true; autoPick(); drawTable(); updateCharts(); } }, `newest ${AUTO_PICK}`));
  }

  function chartControls() {
    const x = h("select", { id: "x-axis", "aria-label": "x axis", onchange: (e) => { st.opts.x = e.target.value; if (st.charts) { st.charts.opts.x = st.opts.x; st.charts.reload(); } } },
      h("option", { value: "step" }, "x: step"), h("option", { value: "time" }, "x: time"), h("option", { value: "relative" }, "x: time since start"));
    const writers = h("select", { id: "writers", "aria-label": "writers", onchange: (e) => { st.opts.writers = e.target.value; if (st.charts) { st.charts.opts.writers = st.opts.writers; st.charts.reload(); } } },
      h("option", { value: "per" }, "a line per writer"), h("option", { value: "combined" }, "writers combined (mean, band)"));
    const label = h("span", { class: "muted" }, "0");
    const smooth = h("input", { id: "smoothing", type: "range", min: "0", max: "0.99", step: "0.01", value: "0", oninput: (e) => {
      st.opts.smoothing = Number(e.target.value);
      label.textContent = e.target.value;
      if (st.charts) { st.charts.opts.smoothing = st.opts.smoothing; st.charts.redraw(); }
    } });
    return h("div", { class: "controls" }, x, writers, h("label", { class: "inline" }, "smoothing ", smooth, label),
      h("span", { class: "muted" }, "drag across a chart to zoom, double-click to reset"));
  }

  // Loads race (the live poll and a click on "older"): only the latest one started is applied.
  // The page asks for the latest values of the columns it shows only (a run may have hundreds
  // of keys); the answer names every key, and if that changes the columns, their values are
  // asked for after the first charts (refresh), not before them.
  async function loadPage() {
    const gen = (st.gen = (st.gen || 0) + 1);
    const asked = st.shown.slice();
    const page = await api(`/v1/projects/${enc(name)}/runs` + qs({
      limit: PAGE, status: st.status, name_prefix: st.prefix, cursor: st.cursors[st.page], latest_keys: asked.join(",") || ",",
    }));
    if (gen !== st.gen) return false;
    st.shown = metricColumns(page.keys || [], project);
    remember(name, st.shown);
    st.columnsStale = !st.shown.every((k) => asked.includes(k));
    for (const k of page.keys || []) st.keys.add(k);
    st.pageKeys = (page.keys || []).length;
    st.rows = page.runs;
    st.next = page.next;
    for (const r of st.rows) if (st.picked.has(r.id)) st.picked.set(r.id, r); // fresher status
    if (st.auto) autoPick();
    return true;
  }

  function autoPick() {
    st.picked = new Map(st.rows.slice(0, AUTO_PICK).map((r) => [r.id, r]));
  }

  async function firstPage() {
    st.cursors = [null];
    st.page = 0;
    await refresh();
  }

  async function refresh() {
    try {
      if (!(await loadPage())) return;
    } catch (err) {
      replace(tableBox, errorBox(err));
      return;
    }
    drawTable();
    updateCharts();
    if (st.columnsStale) {
      st.columnsStale = false;
      const charts = st.charts;
      const first = charts ? Promise.race([charts.firstBatch(), new Promise((resolve) => setTimeout(resolve, 1500))]) : null;
      Promise.resolve(first).then(() => refresh());
    }
  }

  function drawTable() {
    replace(tableBox, runsTable(st, () => { updateCharts(); }));
    replace(pager,
      h("button", { id: "prev-page", disabled: st.page === 0, onclick: () => { st.page -= 1; refresh(); } }, "← newer"),
      h("span", { class: "muted" }, ` page ${st.page + 1} · ${st.rows.length} runs · ${st.picked.size} picked `),
      h("button", { id: "next-page", disabled: !st.next, onclick: () => { st.cursors[st.page + 1] = st.next; st.page += 1; refresh(); } }, "older →"));
  }

  function updateCharts() {
    const runs = [...st.picked.values()];
    const keys = st.keys; // every key of the pages shown: a chart without a series says so
    const sig = runs.map((r) => r.id).join(",") + "|" + [...keys].sort().join(",");
    if (st.charts && sig === st.chartKeys) {
      // Same runs and keys: only statuses may have changed (live tails follow them).
      st.charts.runs = runs;
      badgeUpdate(runs);
      return;
    }
    st.chartKeys = sig;
    if (st.charts) st.charts.destroy();
    replace(chartsBox);
    if (!runs.length) {
      badgeUpdate(runs);
      chartsBox.append(h("p", { class: "muted" }, "Pick runs in the table to chart them."));
      st.charts = null;
      return;
    }
    st.charts = new ChartSet(name, runs, st.opts);
    const charts = st.charts;
    const all = [...keys].sort();
    const main = all.filter((k) => !k.startsWith("system/"));
    const system = all.filter((k) => k.startsWith("system/"));
    const grid = h("div", { class: "panels", id: "metric-panels" });
    chartsBox.append(grid);
    for (const k of main) st.charts.add(grid, k);
    if (system.length) {
      const sysGrid = h("div", { class: "panels", id: "system-panels" });
      chartsBox.append(h("details", { id: "system-section" }, h("summary", {}, `System (${system.length})`), sysGrid));
      for (const k of system) st.charts.add(sysGrid, k);
    }
    if (!all.length) chartsBox.append(h("p", { class: "muted" }, "The picked runs have no metrics yet."));
    // The badge after the first charts (or 1.5 s when none is on screen): one line of text
    // should not compete with them.
    Promise.race([charts.firstBatch(), new Promise((resolve) => setTimeout(resolve, 1500))])
      .then(() => { if (st.charts === charts) badgeUpdate(runs); });
  }

  // One request for the receipts of every picked run; a newer call wins over a slower older one.
  async function badgeUpdate(runs) {
    const some = runs.slice(0, BADGE_RUNS);
    const gen = (st.badgeGen = (st.badgeGen || 0) + 1);
    if (!some.length) {
      replace(badge, "Integrity: no runs picked");
      return;
    }
    try {
      const r = await api(`/v1/projects/${enc(name)}/integrity` + qs({ runs: some.map((x) => x.id).join(",") }));
      if (gen !== st.badgeGen) return;
      const rs = r.receipts;
      const sum = (f) => r[f] || 0;
      const intact = r.intact;
      const pending = sum("pending");
      badge.className = "badge-line " + (intact ? "ok" : pending ? "pending" : "bad");
      badge.dataset.intact = String(intact);
      replace(badge,
        h("strong", {}, intact ? "✓ intact" : pending ? "… pending" : "✗ not intact"),
        `  ${fmtNum(sum("points_committed"))} committed · ${fmtNum(sum("points_stored"))} stored · ` +
        `${fmtNum(sum("duplicates_collapsed"))} duplicates collapsed · ${fmtNum(sum("lost"))} lost` +
        (pending ? ` · ${fmtNum(pending)} pending` : "") +
        `  (${rs.length === runs.length ? "" : `first ${rs.length} of `}${runs.length} picked run${runs.length === 1 ? "" : "s"})`);
    } catch (err) {
      replace(badge, errorBox(err));
    }
  }

  await refresh();
  // Live: new runs and status changes in the table; running runs' charts tail themselves. The
  // next poll is set when one ends: a slow server gets one request at a time, never a pile.
  let live = true;
  async function poll() {
    try {
      if (document.hidden) return; // a background tab asks for nothing
      // What the table and the charts show: runs, statuses, columns and their latest values.
      const state = () => JSON.stringify([st.keys.size, st.pageKeys, st.shown,
        st.rows.map((r) => [r.id, r.status, st.shown.map((k) => ((r.latest || {})[k] || {}).value)])]);
      const before = state();
      if (!(await loadPage())) return;
      const after = state();
      if (before !== after) { drawTable(); updateCharts(); } else if (st.picked.size && [...st.picked.values()].some((r) => r.status === "running")) badgeUpdate([...st.picked.values()]);
    } catch (_) {
      // the next poll tries again
    } finally {
      if (live) st.timer = setTimeout(poll, REFRESH_MS);
    }
  }
  st.timer = setTimeout(poll, REFRESH_MS);
  return () => {
    live = false;
    clearTimeout(st.timer);
    if (st.charts) st.charts.destroy();
  };
}

function sessionsTable(sessions) {
  if (!sessions.length) return h("p", { class: "muted" }, "No sessions.");
  return h("table", { class: "grid", id: "sessions" },
    h("thead", {}, h("tr", {}, ["Tag", "Branch", "Experiments", "Started", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, sessions.map((s) => h("tr", {},
      h("td", {}, s.tag || s.id), h("td", {}, s.branch || "—"), h("td", { class: "num" }, fmtNum(s.experiments)),
      h("td", {}, fmtTime(s.created_at)), h("td", {}, s.active ? h("span", { class: "badge ok" }, "active") : "")))));
}

function cell(v) {
  if (v === undefined) return "";
  if (v === null) return "null";
  if (typeof v === "object") return JSON.stringify(v).slice(0, 60);
  return typeof v === "number" ? fmtNum(v) : String(v).slice(0, 60);
}

// The columns last shown for a project, so the next visit asks for their values at once.
function remembered(name, project) {
  try {
    const v = JSON.parse(localStorage.getItem("arwx.columns." + name) || "null");
    if (Array.isArray(v) && v.every((k) => typeof k === "string")) return v.slice(0, METRIC_COLUMNS);
  } catch (_) { /* storage off or bad: ask the server */ }
  return project.objective_metric ? [project.objective_metric] : [];
}

function remember(name, shown) {
  try {
    localStorage.setItem("arwx.columns." + name, JSON.stringify(shown));
  } catch (_) { /* storage off: the next visit asks twice */ }
}

/** The metric columns of the runs table: the goal's metric first, then the first other keys
 * (system/* never), at most METRIC_COLUMNS. */
function metricColumns(keys, project) {
  const metrics = keys.filter((k) => !k.startsWith("system/")).sort();
  const goal = project.objective_metric;
  if (goal && metrics.includes(goal)) {
    metrics.splice(metrics.indexOf(goal), 1);
    metrics.unshift(goal);
  }
  return metrics.slice(0, METRIC_COLUMNS);
}

function runsTable(st, onPick) {
  const rows = st.rows;
  // Config columns: the top-level keys most runs of this page have (at most 6).
  const freq = new Map();
  for (const r of rows) for (const k of Object.keys(r.config || {})) freq.set(k, (freq.get(k) || 0) + 1);
  const cfg = [...freq.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, 6).map((e) => e[0]);
  const shown = st.shown;
  const cols = [
    { id: "status", title: "Status", get: (r) => r.status },
    { id: "name", title: "Name", get: (r) => r.name || r.id },
    { id: "writers", title: "Writers", get: (r) => (r.writer_ids || []).length, num: true },
    ...cfg.map((k) => ({ id: "c:" + k, title: k, get: (r) => (r.config || {})[k], cfg: true })),
    ...shown.map((k) => ({ id: "m:" + k, title: `last ${k}`, get: (r) => ((r.latest || {})[k] || {}).value, num: true })),
    { id: "created", title: "Started", get: (r) => r.created_at },
  ];
  let sorted = rows;
  const col = cols.find((c) => c.id === st.sort);
  if (col) {
    sorted = rows.slice().sort((a, b) => {
      const x = col.get(a);
      const y = col.get(b);
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x ?? "").localeCompare(String(y ?? ""));
      return st.desc ? -c : c;
    });
  }
  const redraw = (tbl) => tbl.replaceWith(runsTable(st, onPick));
  const table = h("table", { class: "grid runs", id: "runs" });
  const head = h("tr", {}, h("th", {}, ""), cols.map((c) => h("th", {
    class: "sortable" + (c.num ? " num" : "") + (c.cfg ? " cfg" : ""), "data-col": c.id,
    onclick: () => { st.desc = st.sort === c.id ? !st.desc : false; st.sort = c.id; redraw(table); },
  }, c.title, st.sort === c.id ? (st.desc ? " ▼" : " ▲") : "")));
  const body = h("tbody", {}, sorted.map((r) => h("tr", { "data-run": r.id, class: st.picked.has(r.id) ? "picked" : "" },
    h("td", {}, h("input", {
      type: "checkbox", class: "pick", "aria-label": "compare", checked: st.picked.has(r.id),
      onchange: (e) => {
        st.auto = false;
        if (e.target.checked && st.picked.size < MAX_PICK) st.picked.set(r.id, r);
        else { st.picked.delete(r.id); e.target.checked = false; }
        e.target.closest("tr").className = st.picked.has(r.id) ? "picked" : "";
        onPick();
      },
    })),
    h("td", {}, h("span", { class: `status ${r.status}` }, r.status)),
    h("td", { class: "run-name", title: r.id }, r.name || r.id),
    h("td", { class: "num" }, String((r.writer_ids || []).length)),
    cfg.map((k) => h("td", { class: "cfg" }, cell((r.config || {})[k]))),
    shown.map((k) => h("td", { class: "num metric", "data-key": k }, cell(((r.latest || {})[k] || {}).value))),
    h("td", { title: fmtTime(r.created_at) }, fmtAgo(r.created_at)))));
  table.append(h("thead", {}, head), body);
  if (!rows.length) return h("p", { class: "muted", id: "no-runs" }, "No runs match.");
  return table;
}
