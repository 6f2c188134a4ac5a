// The Experiments chart: every decided experiment as a point (kept vs dropped), the running best
// as a staircase, the target as a dashed line. From GET /v1/projects/:name/progress.
import { fmtNum, h, replace, route } from "./dom.js";

const KEEP = "#2ca02c";
const DROP = "#d62728";
const BEST = "#1f3a93";
const TARGET = "#888888";

/** Draw `progress` into `el`; returns the uPlot (or null when there is nothing to draw). */
export function frontierChart(el, progress) {
  const pts = progress.points || [];
  el.dataset.keep = String(pts.filter((p) => p.status === "keep").length);
  el.dataset.drop = String(pts.filter((p) => p.status === "drop").length);
  el.dataset.frontier = String((progress.frontier || []).length);
  if (!pts.length) {
    replace(el, h("p", { class: "muted" }, "No decided experiments yet."));
    el.dataset.drawn = "1";
    return null;
  }
  const xs = pts.map((p) => p.n);
  const keep = pts.map((p) => (p.status === "keep" ? p.score : null));
  const drop = pts.map((p) => (p.status === "drop" ? p.score : null));
  const best = pts.map((p) => (p.best === undefined ? null : p.best));
  const data = [xs, keep, drop, best];
  const dot = (fill) => ({ show: true, size: 8, fill, stroke: fill });
  const series = [
    { label: "experiment" },
    { label: "keep", stroke: KEEP, paths: () => null, points: dot(KEEP) },
    { label: "drop", stroke: DROP, paths: () => null, points: dot(DROP) },
    { label: "running best", stroke: BEST, width: 2, spanGaps: true, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
  ];
  if (progress.target !== null && progress.target !== undefined) {
    data.push(pts.map(() => progress.target));
    series.push({ label: "target", stroke: TARGET, width: 1, dash: [6, 4], points: { show: false } });
  }
  replace(el);
  const plot = new uPlot({
    width: el.clientWidth || 700, height: 240, series, legend: { show: true },
    scales: { x: { time: false } },
    axes: [{ label: "experiment #", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, { label: progress.objective_metric || "score", size: 64 }],
    cursor: { drag: { x: false, y: false }, points: { size: 10 } },
  }, data, el);
  // A click on the chart opens the experiment under the cursor (capturing: uPlot stops the
  // click on its overlay).
  el.addEventListener("click", (e) => {
    const box = plot.over.getBoundingClientRect();
    if (e.clientX < box.left || e.clientX > box.right || e.clientY < box.top || e.clientY > box.bottom) return;
    const i = plot.posToIdx(e.clientX - box.left);
    if (i !== null && i !== undefined && pts[i]) location.hash = route("e", pts[i].experiment_id);
  }, true);
  plot.over.style.cursor = "pointer";
  el.dataset.drawn = "1";
  return plot;
}

/** The decided experiments as a table, newest first, each a link to its screen. */
export function experimentsTable(progress) {
  const pts = (progress.points || []).slice().reverse();
  return h("table", { class: "grid", id: "experiments" },
    h("thead", {}, h("tr", {}, ["#", "Note", "Decision", "Score", "Best after", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, pts.map((p) => h("tr", { "data-experiment": p.experiment_id },
      h("td", { class: "num" }, String(p.n)),
      h("td", {}, h("a", { href: route("e", p.experiment_id) }, p.note || p.experiment_id)),
      h("td", {}, h("span", { class: `badge ${p.status}` }, p.status)),
      h("td", { class: "num" }, fmtNum(p.score)),
      h("td", { class: "num" }, fmtNum(p.best)),
      h("td", {}, p.improved ? h("span", { class: "badge ok" }, "new best") : ""),
    ))));
}
