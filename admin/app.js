// The Prism admin UI's shell: who is signed in, hash routing between the
// views, and clean-up of a view's timers and streams when leaving it.
"use strict";

const App = {
  me: null,
  authOff: false,
  signinReason: null,
  leaving: [],
  flashText: null,

  async start() {
    window.addEventListener("hashchange", () => App.route());
    await App.identify();
    App.route();
  },

  // Asks the proxy who we are: without a token an anonymous answer means
  // authentication is off; a 401 means we must sign in.
  async identify() {
    const banner = document.getElementById("banner");
    banner.hidden = true;
    try {
      App.me = await Api.get("/whoami");
      App.authOff = App.me.method === "anonymous";
    } catch (e) {
      App.me = null;
      App.authOff = false;
      if (e.httpStatus !== 401) {
        clear(banner);
        append(banner, `The proxy could not be asked who you are: ${e.message}`);
        banner.hidden = false;
      }
    }
    if (App.authOff) {
      clear(banner);
      append(banner, "Authentication is disabled on this proxy: everyone who can reach it may administer every namespace.");
      banner.className = "banner warn";
      banner.hidden = false;
    }
    App.renderUser();
  },

  renderUser() {
    const el = clear(document.getElementById("user"));
    if (App.authOff) {
      append(el, h("span.muted#signed-in-as", "authentication is disabled on this proxy"));
    } else if (App.me) {
      append(el,
        h("a#signed-in-as", { href: "#/whoami", title: "Who am I" }, App.me.subject),
        h("button.link#signout", { type: "button", onclick: () => App.signOut() }, "Sign out"));
    } else {
      append(el, h("a", { href: "#/signin" }, "Sign in"));
    }
  },

  signOut() {
    Api.signOut();
    App.me = null;
    App.renderUser();
    App.signinReason = "You signed out.";
    location.hash = "#/signin";
  },

  // Any 401 from the API: forget the identity and ask for a token.
  unauthenticated(err) {
    if (App.authOff) return;
    App.me = null;
    App.renderUser();
    App.signinReason = err.message;
    if (!location.hash.startsWith("#/signin")) location.hash = "#/signin";
  },

  onLeave(fn) {
    App.leaving.push(fn);
  },

  // A message shown once on the next page.
  flash(text) {
    App.flashText = text;
  },

  parse(hash) {
    const [path, query] = (hash.replace(/^#/, "") || "/namespaces").split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    const params = Object.fromEntries(new URLSearchParams(query || ""));
    if (parts[0] === "signin") return ["signin", params];
    if (parts[0] === "whoami") return ["whoami", params];
    if (parts[0] === "patterns") return ["patterns", params];
    if (parts[0] === "audit") return ["audit", params];
    if (parts[0] === "namespaces" && parts[1] === "new") return ["edit", params];
    if (parts[0] === "namespaces" && parts[1] && parts[2] === "edit") return ["edit", Object.assign(params, { name: parts[1] })];
    if (parts[0] === "namespaces" && parts[1]) return ["namespace", Object.assign(params, { name: parts[1] })];
    return ["namespaces", params];
  },

  async route() {
    for (const fn of App.leaving.splice(0)) {
      try { fn(); } catch (e) { /* already stopped */ }
    }
    let [view, params] = App.parse(location.hash);
    if (!App.me && !App.authOff && view !== "signin") {
      params = { next: location.hash };
      view = "signin";
    }
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.section === (view === "namespace" || view === "edit" ? "namespaces" : view));
    }
    const el = clear(document.getElementById("view"));
    el.dataset.view = view;
    if (App.flashText) {
      append(el, notice(App.flashText, "ok"));
      App.flashText = null;
    }
    const body = append(el, h("div")).lastChild;
    try {
      await Views[view](body, params);
    } catch (e) {
      append(body, errorBox(e, "show this page"));
    }
  },
};

document.addEventListener("DOMContentLoaded", () => App.start());
