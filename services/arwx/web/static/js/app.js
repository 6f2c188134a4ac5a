// The dashboard's shell: sign-in, the header (organization switcher, sign-out), and the router.
// Screens are addressed after "#" (#/p/<project>, #/e/<experiment>, …) so the server serves one page.
import { h, replace, route, errorBox } from "./dom.js";
import { loadSession, onSignedOut, session, setupPassword, signIn, signOut, switchOrg } from "./api.js";
import * as projects from "./pages/projects.js";
import * as project from "./pages/project.js";
import * as experiment from "./pages/experiment.js";
import * as artifacts from "./pages/artifacts.js";
import * as connection from "./pages/connection.js";

const view = document.getElementById("view");
let cleanup = null;

// [pattern, page]: the first whose pattern matches the hash renders the screen.
const ROUTES = [
  [/^#?\/?$/, projects],
  [/^#\/p\/([^/]+)$/, project],
  [/^#\/e\/([^/]+)$/, experiment],
  [/^#\/a\/([^/]+)$/, artifacts],
  [/^#\/a\/([^/]+)\/([^/]+)$/, artifacts],
  [/^#\/connection$/, connection],
];

function header() {
  const me = session();
  const nav = document.getElementById("nav");
  const account = document.getElementById("account");
  if (!me) {
    replace(nav);
    replace(account);
    return;
  }
  replace(nav, h("a", { href: "#/" }, "Projects"), h("a", { href: route("connection") }, "Connection"));
  const orgs = me.orgs || [{ org: me.org, name: me.org }];
  const picker = h("select", {
    id: "org-switch", "aria-label": "organization",
    onchange: async (e) => {
      try {
        await switchOrg(e.target.value);
        location.hash = "#/";
        render();
      } catch (err) {
        replace(view, errorBox(err));
      }
    },
  }, orgs.map((o) => h("option", { value: o.org, selected: o.org === me.org }, o.name || o.org)));
  replace(account,
    h("span", { class: "muted", id: "me" }, me.user ? me.user.email : ""), picker,
    h("button", { id: "sign-out", class: "link", onclick: async () => { await signOut(); render(); } }, "Sign out"));
}

function signInScreen(message) {
  const email = h("input", { id: "email", type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", type: "password", name: "password", autocomplete: "current-password", required: true });
  const msg = h("p", { id: "signin-error", class: "error", role: "alert", hidden: !message }, message || "");
  const form = h("form", {
    id: "signin", class: "card narrow",
    onsubmit: async (e) => {
      e.preventDefault();
      msg.hidden = true;
      try {
        await signIn(email.value, password.value);
        render();
      } catch (err) {
        msg.textContent = err.status === 401 ? "Wrong email or password." : `${err.message}`;
        msg.hidden = false;
        password.value = "";
      }
    },
  },
  h("h1", {}, "Sign in to arwx"),
  h("label", {}, "Email", email),
  h("label", {}, "Password", password),
  h("button", { type: "submit", class: "primary" }, "Sign in"),
  msg);
  replace(view, form);
  email.focus();
}

// /setup?token=…: the one-time link `arwx server` prints on first start (and invitations carry).
function setupScreen(token) {
  const email = h("input", { id: "email", type: "email", autocomplete: "username" });
  const password = h("input", { id: "password", type: "password", autocomplete: "new-password", required: true });
  const msg = h("p", { class: "error", role: "alert", hidden: true });
  replace(view, h("form", {
    id: "setup", class: "card narrow",
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        await setupPassword(token, email.value.trim() || null, password.value);
        history.replaceState(null, "", "/#/");
        render();
      } catch (err) {
        msg.textContent = err.message;
        msg.hidden = false;
      }
    },
  },
  h("h1", {}, "Set your password"),
  h("label", {}, "Email (for a new account)", email),
  h("label", {}, "Password", password),
  h("button", { type: "submit", class: "primary" }, "Set password and sign in"),
  msg));
}

async function render() {
  if (cleanup) {
    try { cleanup(); } catch (_) { /* a page's teardown must not block the next */ }
    cleanup = null;
  }
  const token = location.pathname === "/setup" ? new URLSearchParams(location.search).get("token") : null;
  if (token) {
    header();
    setupScreen(token);
    return;
  }
  if (!session()) {
    header();
    signInScreen();
    return;
  }
  header();
  const hash = location.hash || "#/";
  for (const [re, page] of ROUTES) {
    const m = hash.match(re);
    if (m) {
      const args = m.slice(1).map((s) => decodeURIComponent(s));
      replace(view, h("p", { class: "muted" }, "Loading…"));
      try {
        cleanup = (await page.render(view, ...args)) || null;
      } catch (err) {
        if (err.status !== 401) replace(view, errorBox(err));
      }
      return;
    }
  }
  replace(view, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "All projects")));
}

onSignedOut(() => render());
window.addEventListener("hashchange", render);

(async () => {
  try {
    await loadSession();
  } catch (err) {
    replace(view, errorBox(err));
    return;
  }
  render();
})();
