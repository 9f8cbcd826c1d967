// The frame the node portal and the controller's dashboard share: a hash route per view, the login form while
// nobody is logged in, what a view must close (websockets, timers) closed when another opens, errors in place.
import { el, say, show } from "./dom.js";

// ``views``: name -> async function(...route args), which may resolve to its close function; ``home``: the view
// of an empty or unknown route; ``sections``: view -> the nav entry it belongs to; ``user``: the login form's
// default user name; ``onLogin``: run after a login; ``beforeView(nav)``: adjust the nav for the person.
export function shell({ api, views, home, sections = {}, user = "", onLogin = () => {}, beforeView = () => {} }) {
  let leaving = [];
  const onLeave = (fn) => leaving.push(fn);

  function failed(error) {
    if (error instanceof api.ApiError && error.status === 401) return;
    show(el("p", { class: "error", role: "alert" }, `Error: ${error.message}`));
  }

  function route() {
    for (const fn of leaving) fn();
    leaving = [];
    const nav = document.getElementById("nav");
    if (!api.token()) {
      nav.hidden = true;
      return loginView();
    }
    nav.hidden = false;
    const [name, ...args] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    const view = views[name] || views[home];
    const section = sections[name] || (views[name] ? name : home);
    for (const link of nav.querySelectorAll("a")) {
      if (link.getAttribute("href") === `#/${section}`) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    beforeView(nav);
    say("");
    view(...args).then((close) => { if (typeof close === "function") onLeave(close); }).catch(failed);
  }

  function loginView() {
    const error = el("p", { class: "error", role: "alert" });
    const form = el("form", { class: "stack", id: "login", onsubmit: async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      try {
        await api.login(data.get("username"), data.get("password"));
        onLogin();
        route();
      } catch (e) {
        error.textContent = e.status === 401 ? "Wrong user name or password." : e.message;
      }
    } },
    el("label", {}, "User name",
      el("input", { name: "username", autocomplete: "username", required: true, value: user })),
    el("label", {}, "Password",
      el("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    el("button", { type: "submit" }, "Log in"), error);
    show(el("h2", {}, "Log in"), form);
    form.querySelector("[name=password]").focus();
  }

  window.addEventListener("hashchange", route);
  window.addEventListener("paradrop-logout", route);
  return { route, onLeave, failed };
}
