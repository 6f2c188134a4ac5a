// Projects: every project with its goal, best score, run count and last activity.
import { api, qs } from "../api.js";
import { fmtAgo, fmtNum, h, replace, route } from "../dom.js";

export function goalText(p) {
  if (!p.objective_metric) return "no goal set";
  const dir = p.lower_is_better ? "minimize" : "maximize";
  const target = p.target === null || p.target === undefined ? "" : `, target ${fmtNum(p.target)}`;
  return `${dir} ${p.objective_metric}${target}`;
}

export async function render(view) {
  const rows = [];
  let cursor = null;
  // Every page of projects (100 a page); the list is names and counts, small even for many.
  do {
    const page = await api("/v1/projects" + qs({ limit: 1000, cursor }));
    rows.push(...page.projects);
    cursor = page.next;
  } while (cursor && rows.length < 10000);
  const table = h("table", { id: "projects", class: "grid" },
    h("thead", {}, h("tr", {}, ["Project", "Goal", "Best", "Runs", "Running", "Last activity"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((p) => h("tr", { "data-project": p.name },
      h("td", {}, h("a", { href: route("p", p.name) }, p.name)),
      h("td", {}, goalText(p)),
      h("td", { class: "num" }, fmtNum(p.best), p.target_met ? h("span", { class: "badge ok" }, "target met") : null),
      h("td", { class: "num" }, fmtNum(p.runs)),
      h("td", { class: "num" }, fmtNum(p.running)),
      h("td", {}, fmtAgo(p.last_run_at || p.updated_at))))));
  replace(view,
    h("h1", {}, "Projects"),
    rows.length ? table : h("p", { class: "muted", id: "no-projects" },
      "No projects yet. Start a run with the SDK (see ", h("a", { href: route("connection") }, "Connection"), ")."));
}
