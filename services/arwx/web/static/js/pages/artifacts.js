// Artifacts of a project: their versions, refs (the winner badge), lineage to experiments, ref log.
import { api, enc, qs } from "../api.js";
import { fmtNum, fmtTime, h, replace, route } from "../dom.js";

export async function render(view, project, name) {
  if (!name) return list(view, project);
  const a = await api(`/v1/artifacts/${enc(name)}` + qs({ project }));
  const producedBy = new Map((a.lineage || []).map((l) => [l.version, l.produced_by]));
  replace(view,
    h("p", { class: "crumbs" }, h("a", { href: route("p", project) }, project), " / ", h("a", { href: route("a", project) }, "artifacts")),
    h("h1", {}, name, " ", h("span", { class: "muted" }, a.type || "")),
    h("p", { id: "refs" }, Object.entries(a.refs || {}).map(([ref, v]) => h("span", { class: `badge ${ref === "winner" ? "winner" : "ref"}`, "data-ref": ref }, `${ref} → ${v}`))),
    h("table", { class: "grid", id: "versions" },
      h("thead", {}, h("tr", {}, ["Version", "Refs", "Files", "Size", "Produced by", "Digest", "Created"].map((t) => h("th", {}, t)))),
      h("tbody", {}, (a.versions || []).map((v) => h("tr", { "data-version": v.version },
        h("td", {}, v.version),
        h("td", {}, (v.refs || []).map((r) => h("span", { class: `badge ${r === "winner" ? "winner" : "ref"}` }, r))),
        h("td", { class: "num" }, fmtNum(v.file_count)),
        h("td", { class: "num" }, fmtNum(v.size)),
        h("td", {}, producedBy.get(v.version) || v.produced_by ? h("a", { href: route("e", producedBy.get(v.version) || v.produced_by) }, producedBy.get(v.version) || v.produced_by) : "—"),
        h("td", { class: "mono" }, String(v.digest || "").slice(0, 16)),
        h("td", {}, fmtTime(v.created_at)))))),
    h("h2", {}, "Ref log"),
    h("table", { class: "grid", id: "ref-log" },
      h("thead", {}, h("tr", {}, ["Ref", "From", "To", "Reason", "When"].map((t) => h("th", {}, t)))),
      h("tbody", {}, (a.ref_log || []).map((m) => h("tr", {},
        h("td", {}, m.ref), h("td", {}, m.from || "—"), h("td", {}, m.to), h("td", {}, m.reason || ""), h("td", {}, fmtTime(m.moved_at)))))));
}

async function list(view, project) {
  const out = await api("/v1/artifacts" + qs({ project }));
  const arts = out.artifacts || [];
  replace(view,
    h("p", { class: "crumbs" }, h("a", { href: route("p", project) }, project), " / artifacts"),
    h("h1", {}, "Artifacts"),
    arts.length ? h("table", { class: "grid", id: "artifacts" },
      h("thead", {}, h("tr", {}, ["Name", "Type", "Latest", "Versions", "Updated"].map((t) => h("th", {}, t)))),
      h("tbody", {}, arts.map((x) => h("tr", {},
        h("td", {}, h("a", { href: route("a", project, x.name) }, x.name)), h("td", {}, x.type),
        h("td", {}, x.latest), h("td", { class: "num" }, fmtNum(x.versions)), h("td", {}, fmtTime(x.updated_at))))))
      : h("p", { class: "muted" }, "No artifacts in this project."));
}
