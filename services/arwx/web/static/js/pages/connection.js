// Connection: API keys (create: the secret shown once; revoke), and the lines to start logging.
import { api, enc } from "../api.js";
import { errorBox, fmtTime, h, replace } from "../dom.js";

export async function render(view) {
  const listBox = h("div", { id: "keys-box" });
  const secretBox = h("div", { id: "new-key" });
  const name = h("input", { id: "key-name", placeholder: "key name (e.g. laptop)", maxlength: "128" });
  // A training job needs write (log) and usually read (resume, history); admin manages keys.
  const scopes = ["read", "write", "admin"].map((s) => h("input", { type: "checkbox", class: "scope", value: s, checked: s !== "admin" }));
  const origin = location.origin;
  replace(view,
    h("h1", {}, "Connection"),
    h("section", {}, h("h2", {}, "Install the SDK"),
      copyBlock("pip-line", `pip install arwandb --find-links ${origin}/sdk/ --no-deps`)),
    h("section", {}, h("h2", {}, "API keys"),
      h("form", { class: "controls", id: "create-key", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const chosen = scopes.filter((c) => c.checked).map((c) => c.value);
          const k = await api("/v1/keys", { method: "POST", body: { name: name.value || "dashboard", scopes: chosen } });
          name.value = "";
          replace(secretBox,
            h("p", {}, h("strong", {}, "Your new key, shown only now: "), "copy it before you leave this page."),
            copyBlock("export-lines", `export ARWANDB_BASE_URL=${origin}\nexport ARWANDB_API_KEY=${k.key}`));
          await refresh();
        } catch (err) {
          replace(secretBox, errorBox(err));
        }
      } }, name, scopes.map((c) => h("label", { class: "inline" }, c, c.value)),
      h("button", { type: "submit", class: "primary" }, "Create key")),
      secretBox, listBox));

  async function refresh() {
    let keys;
    try {
      ({ keys } = await api("/v1/keys"));
    } catch (err) {
      if (err.status !== 403) throw err;
      replace(listBox, h("p", { class: "muted", id: "keys-forbidden" }, "Only an admin of this organization manages its API keys."));
      return;
    }
    replace(listBox, h("table", { class: "grid", id: "keys" },
      h("thead", {}, h("tr", {}, ["Name", "Prefix", "Scopes", "Created", "State", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, keys.map((k) => h("tr", { "data-key-id": k.id },
        h("td", {}, k.name || ""), h("td", { class: "mono" }, k.prefix + "…"), h("td", {}, (k.scopes || []).join(", ")),
        h("td", {}, fmtTime(k.created_at)),
        h("td", {}, k.revoked ? h("span", { class: "badge drop" }, "revoked") : h("span", { class: "badge ok" }, "active")),
        h("td", {}, k.revoked ? "" : h("button", { class: "danger revoke", onclick: async () => {
          if (!confirm(`Revoke key ${k.name || k.prefix}? Programs using it stop at once.`)) return;
          try {
            await api(`/v1/keys/${enc(k.id)}`, { method: "DELETE" });
            await refresh();
          } catch (err) {
            listBox.prepend(errorBox(err));
          }
        } }, "Revoke")))))));
  }
  await refresh();
}

function copyBlock(id, text) {
  const pre = h("pre", { id, class: "copy" }, text);
  const btn = h("button", { class: "link", onclick: async () => {
    try {
      await navigator.clipboard.writeText(text);
      btn.textContent = "copied";
    } catch (_) {
      btn.textContent = "select and copy";
    }
  } }, "copy");
  return h("div", { class: "copy-block" }, pre, btn);
}
