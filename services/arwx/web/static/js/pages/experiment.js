// Experiment: its note, commit, diff, code snapshot (tree and file view), decision, what it produced.
import { api, enc } from "../api.js";
import { errorBox, fmtNum, fmtTime, h, replace, route } from "../dom.js";

const MAX_FILE_VIEW = 1 << 20; // bytes shown in the file view

export async function render(view, id) {
  const e = await api(`/v1/experiments/${enc(id)}`);
  const [diff, tree] = await Promise.all([
    api(`/v1/experiments/${enc(id)}/diff`, { text: true }).catch(() => ""),
    e.has_tree ? api(`/v1/experiments/${enc(id)}/tree`) : Promise.resolve(null),
  ]);
  const d = e.decision;
  const fileView = h("div", { id: "file-view" });
  replace(view,
    h("p", { class: "crumbs" }, h("a", { href: route("p", e.project) }, e.project), " / experiment"),
    h("h1", {}, e.note || e.id),
    h("dl", { class: "facts", id: "experiment-facts" },
      h("dt", {}, "Id"), h("dd", {}, e.id),
      h("dt", {}, "Decision"), h("dd", { id: "decision" }, d
        ? [h("span", { class: `badge ${d.status}` }, d.status), ` ${d.metric || ""} ${fmtNum(d.score)} · ${fmtTime(d.decided_at || d.created_at)}`]
        : "none yet"),
      h("dt", {}, "Commit"), h("dd", { class: "mono" }, e.commit || "—", e.parent_commit ? `  (parent ${e.parent_commit})` : ""),
      h("dt", {}, "Session"), h("dd", {}, e.session_id || "—"),
      h("dt", {}, "Repro key"), h("dd", { class: "mono" }, e.repro_key || "—"),
      h("dt", {}, "Config"), h("dd", { class: "mono" }, e.config ? JSON.stringify(e.config) : "—"),
      h("dt", {}, "Created"), h("dd", {}, fmtTime(e.created_at))),
    (e.decisions || []).length > 1 ? h("section", {}, h("h2", {}, "Decisions"),
      h("ol", {}, e.decisions.map((x) => h("li", {}, `${x.status} ${x.metric || ""} ${fmtNum(x.score)} · ${fmtTime(x.decided_at || x.created_at)}`)))) : null,
    h("section", { id: "produced" }, h("h2", {}, "Produced"),
      (e.produced || []).length
        ? h("ul", {}, e.produced.map((v) => h("li", {}, h("a", { href: route("a", v.project || e.project, v.name) }, `${v.name} ${v.version}`), h("span", { class: "muted mono" }, ` ${String(v.digest || "").slice(0, 12)}`))))
        : h("p", { class: "muted" }, "No artifact versions name this experiment.")),
    h("section", { id: "diff-section" }, h("h2", {}, "Diff"),
      diff ? h("pre", { id: "diff", class: "diff" }, diffLines(diff)) : h("p", { class: "muted" }, "No diff.")),
    h("section", { id: "tree-section" }, h("h2", {}, "Code snapshot"),
      tree ? treeView(tree, fileView) : h("p", { class: "muted" }, "No snapshot."), fileView));
}

function diffLines(text) {
  return text.split("\n").map((line) => h("span", {
    class: line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : "",
  }, line + "\n"));
}

function treeView(tree, fileView) {
  const files = Object.entries(tree.files || {}).sort((a, b) => a[0].localeCompare(b[0]));
  return h("ul", { class: "tree", id: "tree" }, files.map(([path, f]) => h("li", {},
    h("button", { class: "link mono", onclick: () => showFile(fileView, path, f) }, path),
    h("span", { class: "muted" }, ` ${fmtNum(f.size)} B`))));
}

async function showFile(el, path, f) {
  replace(el, h("p", { class: "muted" }, `Loading ${path}…`));
  if (f.size > MAX_FILE_VIEW) {
    replace(el, h("p", { class: "muted" }, `${path}: ${fmtNum(f.size)} bytes, too large to show here.`));
    return;
  }
  try {
    const r = await fetch(`/v1/blobs/${enc(f.sha256)}`, { credentials: "same-origin" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const bytes = new Uint8Array(await r.arrayBuffer());
    let text;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch (_) {
      replace(el, h("h3", {}, path), h("p", { class: "muted" }, "Binary file."));
      return;
    }
    replace(el, h("h3", { class: "mono" }, path), h("pre", { class: "file", id: "file-text" }, text));
  } catch (err) {
    replace(el, errorBox(err));
  }
}
