// Metric charts from the charts API (docs/query.md), drawn with uPlot.
//
// - A panel fetches nothing until it scrolls into view (IntersectionObserver), so a project with
//   hundreds of keys costs what is on screen; a closed System section mounts nothing. Panels that
//   come into view together share one request; one whose panels all scroll out of view before
//   it answers is cancelled (they ask again when seen again).
// - One request per panel asks for about one bucket per pixel (min/max per bucket keeps spikes).
//   Smoothing is a time-weighted EMA over those buckets, the finest data the chart has: never over
//   points thinned further for drawing.
// - Dragging over a chart zooms by asking the server for that range at full resolution.
// - Running runs get only their tail: since the last bucket drawn, merged into what is there.
import { api, enc, qs } from "./api.js";
import { color, fmtNum, h, replace } from "./dom.js";

const HEIGHT = 220;
const FIELDS = "value,min,max"; // the line and its band: half the bytes of every array

/** Time-weighted EMA (as W&B's default): the decay follows the x distance, so uneven point
 * density does not bend the curve. smoothing in [0, 1); nulls stay null. */
export function twEma(xs, ys, smoothing) {
  if (!(smoothing > 0)) return ys;
  const weight = Math.min(Math.sqrt(smoothing), 0.999);
  let first = -1;
  let last = -1;
  for (let i = 0; i < ys.length; i++) if (ys[i] !== null) { if (first < 0) first = i; last = i; }
  const range = first >= 0 && last > first ? xs[last] - xs[first] : 1;
  const out = new Array(ys.length).fill(null);
  let acc = 0;
  let weights = 0;
  let prevX = first >= 0 ? xs[first] : 0;
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i];
    if (y === null || y === undefined) continue;
    // 1000 "viewport" units over the whole range, so a setting smooths alike at any zoom; the
    // weighted sum over the sum of weights is the debiased average (the first point is itself).
    const adj = Math.pow(weight, ((xs[i] - prevX) / range) * 1000);
    acc = acc * adj + y;
    weights = weights * adj + 1;
    out[i] = acc / weights;
    prevX = xs[i];
  }
  return out;
}

/** Series with their own x arrays → uPlot's one shared x and null-padded columns. */
export function align(series, fields) {
  const xset = new Set();
  for (const s of series) for (const x of s.x) xset.add(x);
  const xs = Float64Array.from(xset).sort();
  const index = new Map();
  xs.forEach((x, i) => index.set(x, i));
  const cols = series.map((s) => {
    const out = {};
    for (const f of fields) {
      if (!s[f]) continue;
      const col = new Array(xs.length).fill(null);
      s.x.forEach((x, i) => { col[index.get(x)] = s[f][i]; });
      out[f] = col;
    }
    return out;
  });
  return { xs: Array.from(xs), cols };
}

function seriesId(s) {
  return `${s.run_id}\u0000${s.key}\u0000${s.writer_id ?? ""}`;
}

class Panel {
  constructor(set, key) {
    this.set = set;
    this.key = key;
    this.result = null; // the last answer, live tails merged in
    this.range = null; // [lo, hi] while zoomed
    this.visible = false; // on screen (or within the observer's margin)
    this.queued = false;
    this.plot = null;
    this.loading = null;
    this.plotEl = h("div", { class: "plot" });
    this.readout = h("div", { class: "readout muted" }, "\u00a0");
    this.legend = h("div", { class: "legend" });
    this.reset = h("button", { class: "link reset", hidden: true, onclick: () => this.zoom(null) }, "reset zoom");
    this.el = h("section", { class: "panel", "data-key": key, "data-drawn": "0" },
      h("h3", {}, key, this.reset), this.plotEl, this.readout, this.legend);
  }

  params(extra) {
    const o = this.set.opts;
    const samples = this.samples();
    this.el.dataset.samples = String(samples);
    return qs({
      keys: this.key, runs: this.set.runs.map((r) => r.id).join(","), x: o.x, writers: o.writers,
      samples, fields: FIELDS, ...extra,
    });
  }

  samples() {
    return Math.max(64, Math.min(2000, Math.round(this.plotEl.clientWidth || 600)));
  }

  async load() {
    const r = this.range;
    const extra = !r ? {} : this.set.opts.x === "step"
      ? { since_step: Math.max(0, Math.floor(r[0])), max_step: Math.max(0, Math.ceil(r[1])) }
      : { from: Math.floor(r[0]), to: Math.ceil(r[1]) };
    const p = (this.loading = api(`/v1/projects/${enc(this.set.project)}/charts` + this.params(extra), { signal: this.set.abort.signal }));
    try {
      const res = await p;
      if (this.loading !== p) return; // a newer load won
      this.result = res;
      this.draw();
    } catch (err) {
      if (err.name !== "AbortError") this.fail(err);
    } finally {
      if (this.loading === p) this.loading = null;
    }
  }

  fail(err) {
    replace(this.plotEl, h("p", { class: "error" }, err.message));
  }

  zoom(range) {
    this.range = range;
    this.reset.hidden = !range;
    this.load();
  }

  async tail(running) {
    // Only the new part of running runs: from their last bucket on, at the bucket width drawn.
    const cur = this.result;
    if (!cur || this.range || this.loading || this.set.opts.x !== "step") return;
    const ids = this.set.runs.filter((r) => running.has(r.id)).map((r) => r.id);
    if (!ids.length) return;
    let since = Infinity;
    for (const s of cur.series) if (running.has(s.run_id) && s.x.length) since = Math.min(since, s.x[s.x.length - 1]);
    if (since === Infinity) since = 0;
    const span = cur.range ? cur.range[1] - cur.range[0] + 1 : 0;
    const width = Math.max(1, Math.ceil(cur.bucket_width || 1), Math.ceil(span / this.samples()));
    const q = qs({ keys: this.key, runs: ids.join(","), x: "step", writers: this.set.opts.writers, fields: FIELDS,
      since_step: Math.floor(since), interval: width });
    let res;
    try {
      res = await api(`/v1/projects/${enc(this.set.project)}/charts` + q, { signal: this.set.abort.signal });
    } catch (_) {
      return; // the next tick tries again
    }
    if (this.result !== cur || this.range) return;
    const byId = new Map(cur.series.map((s) => [seriesId(s), s]));
    let longest = 0;
    for (const ns of res.series) {
      const old = byId.get(seriesId(ns));
      if (!old) {
        cur.series.push(ns);
        continue;
      }
      const cut = old.x.findIndex((x) => x >= ns.x[0]);
      const keep = cut < 0 ? old.x.length : cut;
      for (const f of ["x", "value", "min", "max"]) {
        if (old[f] && ns[f]) old[f] = old[f].slice(0, keep).concat(ns[f]);
      }
      longest = Math.max(longest, old.x.length);
    }
    if (res.range && cur.range) cur.range[1] = Math.max(cur.range[1], res.range[1]);
    Object.assign(cur.latest, res.latest || {});
    if (longest > 3 * this.samples()) return this.load(); // too many tail buckets: re-bucket once
    this.draw();
  }

  draw() {
    const res = this.result;
    const o = this.set.opts;
    const order = new Map(this.set.runs.map((r, i) => [r.id, i]));
    const names = new Map(this.set.runs.map((r) => [r.id, r.name || r.id]));
    const series = res.series.slice().sort((a, b) => (order.get(a.run_id) - order.get(b.run_id)) || String(a.writer_id).localeCompare(String(b.writer_id)));
    const { xs, cols } = align(series, ["value", "min", "max"]);
    const data = [xs];
    const uSeries = [{}];
    const bands = [];
    const perRunWriters = new Map();
    for (const s of series) perRunWriters.set(s.run_id, (perRunWriters.get(s.run_id) || 0) + 1);
    const counts = [];
    const legend = [];
    series.forEach((s, i) => {
      const c = color(order.get(s.run_id) ?? i);
      const label = names.get(s.run_id) + (s.writer_id !== null && perRunWriters.get(s.run_id) > 1 ? ` · ${s.writer_id}` : "");
      const col = cols[i];
      counts.push(col.value.reduce((n, v) => n + (v === null ? 0 : 1), 0));
      data.push(twEma(xs, col.value, o.smoothing));
      uSeries.push({ label, stroke: c, width: 1.5, spanGaps: true, points: { show: false } });
      if (col.min && col.max) {
        const at = data.length;
        data.push(col.max, col.min);
        uSeries.push({ band: true, label: label + " max", stroke: "transparent", width: 0, spanGaps: true, points: { show: false } });
        uSeries.push({ band: true, label: label + " min", stroke: "transparent", width: 0, spanGaps: true, points: { show: false } });
        bands.push({ series: [at, at + 1], fill: c + "26" });
      }
      legend.push(h("span", { class: "key" }, h("i", { class: "swatch", "data-color": c }), label));
    });
    replace(this.legend, legend);
    for (const sw of this.legend.querySelectorAll(".swatch")) sw.style.background = sw.dataset.color;
    const width = this.plotEl.clientWidth || 600;
    const opts = {
      width, height: HEIGHT, ms: 1, legend: { show: false }, series: uSeries, bands,
      scales: { x: { time: o.x === "time" } },
      axes: [{ label: o.x === "step" ? "step" : o.x === "time" ? "" : "ms since start" }, { size: 64 }],
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const a = u.posToVal(u.select.left, "x");
          const b = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0 }, false);
          this.zoom([a, b]);
        }],
        setCursor: [(u) => this.showReadout(u, uSeries)],
      },
    };
    if (this.plot) this.plot.destroy();
    replace(this.plotEl);
    this.plot = new uPlot(opts, data, this.plotEl);
    this.plot.over.addEventListener("dblclick", () => this.range && this.zoom(null));
    this.el.dataset.series = String(series.length);
    this.el.dataset.points = counts.join(",");
    this.el.dataset.drawn = "1";
    this.el.dataset.tier = String(res.tier ?? "");
    this.set.drawn(this);
  }

  showReadout(u, uSeries) {
    const i = u.cursor.idx;
    if (i === null || i === undefined) return;
    const parts = [`${this.set.opts.x} ${fmtNum(u.data[0][i])}`];
    for (let s = 1; s < uSeries.length; s++) {
      const v = u.data[s][i];
      if (v !== null && !uSeries[s].band) parts.push(`${uSeries[s].label}: ${fmtNum(v)}`);
    }
    this.readout.textContent = parts.slice(0, 8).join("   ");
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: this.plotEl.clientWidth || 600, height: HEIGHT });
  }

  destroy() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

/** Panels for `keys` over `runs` ({id, name, status}) of `project`, mounted as they scroll into view. */
export class ChartSet {
  constructor(project, runs, opts) {
    this.project = project;
    this.runs = runs;
    this.opts = { x: "step", writers: "per", smoothing: 0, liveMs: 2000, ...opts };
    this.abort = new AbortController();
    this.panels = [];
    this.byEl = new Map();
    this.pending = [];
    this.flushTimer = null;
    this.onDrawn = null;
    this.batches = 0;
    this.first = null;
    this.firstDone = new Promise((resolve) => { this.first = resolve; });
    this.io = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const panel = this.byEl.get(e.target);
        if (!panel) continue;
        panel.visible = e.isIntersecting;
        if (panel.visible && !panel.result && !panel.loading && !panel.queued) this.queue(panel);
        if (!panel.visible && panel.batch) panel.batch.maybeCancel();
      }
    }, { rootMargin: "200px 0px" });
    this.onResize = () => this.panels.forEach((p) => p.resize());
    window.addEventListener("resize", this.onResize);
    this.timer = setInterval(() => this.tick(), this.opts.liveMs);
  }

  /** A panel for `key`, appended to `container`. */
  add(container, key) {
    const p = new Panel(this, key);
    this.panels.push(p);
    this.byEl.set(p.el, p);
    container.append(p.el);
    this.io.observe(p.el);
    return p;
  }

  // Panels that scroll into view together are fetched in one request (up to 50 keys, the API's
  // bound): one set of queries on the server instead of one per chart, measured several times
  // cheaper for a screen of charts. Zoom and live tails stay per panel.
  queue(panel) {
    panel.queued = true;
    this.pending.push(panel);
    if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), 20);
  }

  /** Resolves once the first request of charts has answered (or failed): what waits behind it
   * (the integrity badge) then does not compete with the first charts. */
  firstBatch() {
    return this.firstDone;
  }

  async flush() {
    this.flushTimer = null;
    // Scrolled past within the 20 ms: not asked for (asked again when seen again).
    const panels = this.pending.splice(0).filter((p) => { p.queued = false; return p.visible && !p.result && !p.loading; });
    const sent = [];
    for (let i = 0; i < panels.length; i += 50) sent.push(this.fetchGroup(panels.slice(i, i + 50)));
    await Promise.all(sent);
    this.first();
  }

  async fetchGroup(group) {
    this.batches += 1;
    const keys = group.map((p) => p.key).join(",");
    const samples = group[0].samples();
    const q = qs({ keys, runs: this.runs.map((r) => r.id).join(","), x: this.opts.x, writers: this.opts.writers,
      samples, fields: FIELDS });
    for (const p of group) p.el.dataset.samples = String(samples);
    const ctl = new AbortController();
    const onAbort = () => ctl.abort();
    this.abort.signal.addEventListener("abort", onAbort);
    const batch = {
      // Every panel of it out of view: the answer would draw nothing anyone sees.
      maybeCancel: () => { if (group.every((p) => !p.visible || p.loading !== req)) ctl.abort(); },
    };
    const req = api(`/v1/projects/${enc(this.project)}/charts` + q, { signal: ctl.signal });
    for (const p of group) { p.loading = req; p.batch = batch; }
    let res = null;
    try {
      res = await req;
    } catch (err) {
      for (const p of group) {
        if (p.loading !== req) continue;
        p.loading = null;
        p.batch = null;
        if (err.name !== "AbortError") p.fail(err);
        else if (p.visible && !this.abort.signal.aborted) this.queue(p); // back in view meanwhile
      }
    } finally {
      this.abort.signal.removeEventListener("abort", onAbort);
    }
    if (!res) return;
    for (const p of group) {
      if (p.loading !== req) continue; // a zoom started meanwhile
      p.loading = null;
      p.batch = null;
      p.result = { ...res, series: res.series.filter((s) => s.key === p.key) };
      p.draw();
    }
  }

  drawn(panel) {
    if (this.onDrawn) this.onDrawn(panel);
  }

  /** Redraw every drawn panel with the options now in `opts` (smoothing: no refetch). */
  redraw() {
    for (const p of this.panels) if (p.result) p.draw();
  }

  /** Refetch every drawn panel (axis or writer mode changed). */
  reload() {
    for (const p of this.panels) if (p.result) { p.result = null; p.range = null; p.reset.hidden = true; if (p.visible) this.queue(p); }
  }

  tick() {
    const running = new Set(this.runs.filter((r) => r.status === "running").map((r) => r.id));
    if (!running.size) return;
    for (const p of this.panels) if (p.result) p.tail(running);
  }

  destroy() {
    clearInterval(this.timer);
    clearTimeout(this.flushTimer);
    this.abort.abort();
    this.io.disconnect();
    window.removeEventListener("resize", this.onResize);
    for (const p of this.panels) p.destroy();
    this.panels = [];
  }
}
