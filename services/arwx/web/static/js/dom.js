// Building the page from data, safely: every datum becomes a text node or an attribute value,
// never markup (no innerHTML anywhere), so a run named "<img src=x onerror=alert(1)>" is text.

/** h("a", {href: "#/", class: "x", onclick: fn}, "text", child, [more]) → an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = String(v);
    else if (k === "href") el.setAttribute("href", safeHref(v));
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// Links go to this page's own screens (#/…) or to this server's paths (/…); nothing else.
function safeHref(v) {
  const s = String(v);
  return s.startsWith("#") || (s.startsWith("/") && !s.startsWith("//")) ? s : "#";
}

/** Replace every child of el. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link to a screen: route("p", name) → "#/p/<name>" with each part encoded. */
export function route(...parts) {
  return "#/" + parts.map((p) => encodeURIComponent(p)).join("/");
}

export function fmtNum(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : v.toPrecision(5).replace(/\.?0+$/, "");
}

// The API gives seconds, except the artifact routes (milliseconds): tell them apart by size.
function toMs(t) {
  return t > 1e11 ? t : t * 1000;
}

export function fmtTime(sec) {
  if (!sec) return "—";
  return new Date(toMs(sec)).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

export function fmtAgo(sec) {
  if (!sec) return "—";
  const d = (Date.now() - toMs(sec)) / 1000;
  if (d < 60) return `${Math.max(0, Math.round(d))} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return fmtTime(sec).slice(0, 10);
}

/** A message box for an error (an ApiError's text, as text). */
export function errorBox(err) {
  const status = err && err.status ? ` (${err.status})` : "";
  return h("p", { class: "error", role: "alert" }, `${(err && err.message) || err}${status}`);
}

// A palette readable on white; runs keep their colour by position in the selection.
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
export function color(i) {
  return COLORS[i % COLORS.length];
}
