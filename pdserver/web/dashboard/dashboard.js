// The controller dashboard: a hash-routed page per section over the controller's API (client.js), with the
// node portal's look and DOM helpers (style.css, dom.js).
import * as api from "./client.js";
import { el, facts, say, show, table, when } from "./dom.js";
import { shell } from "./shell.js";

const POLL_MS = 3000;  // how often the node pages re-read the nodes when their live stream is gone
const FINAL = new Set(["succeeded", "failed", "cancelled", "interrupted", "forbidden"]);
const views = { nodes, node, store, deploy, deployments, deployment };
const enc = encodeURIComponent;

const { route, onLeave, failed } = shell({
  api, views, home: "nodes", sections: { node: "nodes", deploy: "store", deployment: "deployments" }, user: "admin",
  onLogin: () => whoami(),
});

function presence(n) {
  const word = n.online ? "online" : "offline";
  return el("span", { class: word, "data-node-online": n.id }, word);
}

// Re-reads ``load`` every POLL_MS while the view is open; ``render`` runs only when the answer changed.
async function poll(load, render) {
  let last = null;
  const tick = async () => {
    const value = await load();
    const text = JSON.stringify(value);
    if (text !== last) render(value);
    last = text;
  };
  await tick();
  const timer = setInterval(() => tick().catch((e) => say(`Could not refresh: ${e.message}`)), POLL_MS);
  onLeave(() => clearInterval(timer));
}

// Your nodes, live: /ws/nodes sends the list (in pages, the last with more: false), then a node again each time
// it changed; ``render(list)`` runs on each. Should the stream end while the view is open (the controller restarted), the list is polled instead.
function liveNodes(render) {
  const known = new Map();
  let left = false;
  let listing = false;
  const ws = api.socket("/ws/nodes", (m) => {
    if (m.nodes) {
      if (!listing) known.clear();
      listing = m.more;
      for (const n of m.nodes) known.set(n.id, n);
    } else if (m.node) {
      const before = known.get(m.node.id);
      if (before && before.online !== m.node.online) say(`${m.node.name} is ${m.node.online ? "online" : "offline"}`);
      known.set(m.node.id, m.node);
    } else if (m.removed) {
      known.delete(m.removed);
    }
    render([...known.values()]);
  }, () => {
    if (left) return;
    say("Live updates stopped: the nodes are read every few seconds.");
    poll(() => api.getAll("/api/v1/nodes"), render).catch(failed);
  });
  onLeave(() => { left = true; ws.close(); });
}

async function nodes() {
  const holder = el("div", {}, el("p", {}, "Loading…"));
  show(el("h2", {}, "Nodes"), holder);
  liveNodes((list) => holder.replaceChildren(list.length === 0
    ? el("p", {}, "You have no node yet: create one with pdtools cloud create-node, or provision one with a key.")
    : table("Your nodes", [
      ["Name", (n) => el("a", { href: `#/node/${enc(n.id)}` }, n.name)], ["Id", (n) => el("code", {}, n.id)],
      ["State", presence], ["Last seen", (n) => when(n.last_seen)], ["Version", (n) => n.version ?? ""],
      ["Chutes", (n) => n.chutes.length], ["Your role", (n) => n.role ?? ""], ["Groups", (n) => n.groups.join(", ")],
    ], list)));
}

async function node(id) {
  const title = el("h2", {}, "Node");
  const holder = el("div", {}, el("p", {}, "Loading…"));
  show(title, holder);
  liveNodes((list) => {
    const n = list.find((candidate) => candidate.id === id);
    if (!n) {
      holder.replaceChildren(el("p", {}, "No such node, or you are no member of it."));
      return;
    }
    title.textContent = `Node ${n.name}`;
    holder.replaceChildren(
      facts([["Id", el("code", {}, n.id)], ["State", presence(n)], ["Last seen", when(n.last_seen)],
        ["Version", n.version ?? ""], ["Your role", n.role ?? ""], ["Groups", n.groups.join(", ") || "none"]]),
      el("h3", {}, "Chutes"),
      n.chutes.length === 0
        ? el("p", {}, n.online ? "No chute is installed." : "No chute reported (the node is offline).")
        : table(`Chutes on ${n.name}`, [
          ["Name", (c) => c.name], ["Version", (c) => el("span", { "data-chute-version": c.name }, c.version ?? "")],
          ["State", (c) => el("span", { class: `state-${c.state}`, "data-chute-state": c.name }, c.state ?? "")],
        ], n.chutes));
  });
}

async function store() {
  const chutes = await api.get("/api/v1/store/chutes");
  const versions = await Promise.all(chutes.map((c) => api.get(`/api/v1/store/chutes/${enc(c.name)}/versions`)));
  show(el("h2", {}, "Store"), chutes.length === 0 ? el("p", {}, "The store is empty.")
    : el("div", {}, chutes.map((c, i) => el("section", { class: "chute", "aria-labelledby": `chute-${i}` },
      el("h3", { id: `chute-${i}` }, c.name), c.description ? el("p", {}, c.description) : null,
      versions[i].length === 0 ? el("p", {}, "No version yet.") : table(`Versions of ${c.name}`, [
        ["Version", (v) => v.version], ["Added", (v) => when(v.created)], ["By", (v) => v.created_by ?? ""],
        ["From", (v) => (v.archive ? "project archive" : "configuration")],
        ["", (v) => el("a", { href: `#/deploy/${enc(c.name)}/${enc(v.version)}`,
          "aria-label": `Deploy ${c.name} ${v.version}` }, "Deploy")],
      ], versions[i]), addVersion(c)))),
    el("h3", {}, "Add a chute"), addChute());
}

// Submits a form's values with ``send`` and re-reads the store, or shows the refusal in the form.
function storeForm(id, send, ...fields) {
  const error = el("p", { class: "error", role: "alert" });
  const form = el("form", { class: "stack", id, onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await send(new FormData(form));
      route();
    } catch (e) {
      error.textContent = e.message;
    }
  } }, ...fields, error);
  return form;
}

function addChute() {
  return storeForm("add-chute",
    (data) => api.call("POST", "/api/v1/store/chutes",
      { name: data.get("name"), description: data.get("description") }),
    el("label", {}, "Name", el("input", { name: "name", required: true, maxlength: 63 })),
    el("label", {}, "Description", el("input", { name: "description" })),
    el("button", { type: "submit" }, "Add chute"));
}

function addVersion(chute) {
  return storeForm(`add-version-${chute.name}`,
    (data) => api.call("POST", `/api/v1/store/chutes/${enc(chute.name)}/versions`, data.get("archive")),
    el("label", {}, `New version of ${chute.name}: project archive (.tar.gz; its version is paradrop.yaml's)`,
      el("input", { type: "file", name: "archive", accept: ".tar.gz,.tgz,.tar,application/gzip", required: true })),
    el("button", { type: "submit" }, "Add version"));
}

async function deploy(chute, version) {
  const [list, groups] = await Promise.all([api.getAll("/api/v1/nodes"), api.get("/api/v1/groups")]);
  const error = el("p", { class: "error", role: "alert" });
  const form = el("form", { class: "stack", id: "deploy", onsubmit: async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const target = data.get("target") === "group" ? { group: data.get("group") } : { nodes: data.getAll("node") };
    if (target.nodes && target.nodes.length === 0) {
      error.textContent = "Choose at least one node.";
      return;
    }
    try {
      const created = await api.call("POST", "/api/v1/deployments", { chute, version, ...target });
      location.hash = `#/deployment/${enc(created.id)}`;
    } catch (e) {
      error.textContent = `Deploy failed: ${e.message}`;
    }
  } },
  el("fieldset", {}, el("legend", {}, "To nodes"),
    el("label", { class: "choice" },
      el("input", { type: "radio", name: "target", value: "nodes", checked: true }), "The nodes chosen below"),
    list.length === 0 ? el("p", {}, "You have no node.") : list.map((n) => el("label", { class: "choice" },
      el("input", { type: "checkbox", name: "node", value: n.id }), n.name, " ", presence(n)))),
  el("fieldset", {}, el("legend", {}, "Or to a group"),
    el("label", { class: "choice" },
      el("input", { type: "radio", name: "target", value: "group", disabled: groups.length === 0 }),
      "Every node of the group"),
    el("label", {}, "Group", el("select", { name: "group", disabled: groups.length === 0 },
      groups.map((g) => el("option", { value: g.name }, `${g.name} (${g.nodes.length} nodes)`))))),
  el("button", { type: "submit" }, `Deploy ${chute} ${version}`), error);
  show(el("h2", {}, `Deploy ${chute} version ${version}`), form);
}

async function deployments() {
  const list = await api.get("/api/v1/deployments?limit=50");
  show(el("h2", {}, "Deployments"), list.length === 0
    ? el("p", {}, "No deployment yet. ", el("a", { href: "#/store" }, "Deploy from the store."))
    : table("Deployments, newest first", [
      ["Id", (d) => el("a", { href: `#/deployment/${enc(d.id)}` }, d.id)], ["Chute", (d) => d.chute],
      ["Version", (d) => d.version], ["By", (d) => d.user], ["Created", (d) => when(d.created)],
      ["Deliveries", (d) => Object.entries(d.states).map(([s, n]) => `${n} ${s}`).join(", ")],
      ["Finished", (d) => (d.finished ? "yes" : "no")],
    ], list));
}

// One deployment: a row per node, updated live from /ws/deployments/<id> (arrays of updates) until every delivery
// is final. The summary is counted once per message, not once per update: a deployment may reach 10,000 nodes.
async function deployment(id) {
  const [shown, list] = await Promise.all([api.get(`/api/v1/deployments/${enc(id)}`), api.getAll("/api/v1/nodes")]);
  const names = new Map(list.map((n) => [n.id, n.name]));
  const rows = new Map();
  const summary = el("p", { class: "summary", id: "summary", role: "status" });
  const log = el("ol", { class: "progress", id: "progress", "aria-label": "Progress" });
  const update = (nodeId, state, message, time) => {
    const row = rows.get(nodeId);
    if (!row) return;
    row.state.textContent = state;
    row.state.className = `state-${state}`;
    if (message) row.message.textContent = message;
    row.time.textContent = when(time);
  };
  const summarize = () => {
    const states = [...rows.values()].map((r) => r.state.textContent);
    const done = states.filter((s) => FINAL.has(s)).length;
    summary.textContent = done === states.length ? `Finished: ${countStates(states)}`
      : `${done} of ${states.length} done: ${countStates(states)}`;
  };
  const body = el("tbody", {}, shown.deliveries.map((d) => {
    const cells = { state: el("span", { "data-delivery-state": d.node_id }), message: el("span"), time: el("span") };
    rows.set(d.node_id, cells);
    return el("tr", {}, el("td", { "data-label": "Node" }, names.get(d.node_id) ?? d.node_id),
      el("td", { "data-label": "State" }, cells.state), el("td", { "data-label": "Message" }, cells.message),
      el("td", { "data-label": "Updated" }, cells.time));
  }));
  show(el("h2", {}, `Deployment ${shown.id}: ${shown.chute} ${shown.version}`), summary,
    el("div", { class: "scroll" }, el("table", { class: "responsive" }, el("caption", { class: "skip" }, "Deliveries"),
      el("thead", {}, el("tr", {}, ["Node", "State", "Message", "Updated"].map((h) => el("th", { scope: "col" }, h)))),
      body)),
    ...(shown.finished ? [] : [el("h3", {}, "Progress"), log]));
  for (const d of shown.deliveries) update(d.node_id, d.state, d.message, d.updated);
  summarize();
  if (shown.finished) return;
  let left = false;
  const ws = api.socket(`/ws/deployments/${enc(id)}`, (updates) => {
    for (const m of updates) {
      update(m.node_id, m.state, m.message, m.time);
      log.append(el("li", {}, `${names.get(m.node_id) ?? m.node_id}: ${m.state}${m.message ? ` (${m.message})` : ""}`));
    }
    summarize();
  }, (event) => {
    if (!left && event.code !== 1000) say(`The progress stream closed (${event.code}); reload to resume.`);
  });
  onLeave(() => { left = true; ws.close(); });
}

function countStates(states) {
  const counts = new Map();
  for (const s of states) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts].map(([s, n]) => `${n} ${s}`).join(", ");
}

async function whoami() {
  try {
    const me = await api.get("/api/v1/auth/me");
    document.getElementById("who").textContent = me.username;
  } catch (e) {
    failed(e);
  }
}

document.getElementById("logout").addEventListener("click", async () => {
  await api.logout().catch(() => {});
  document.getElementById("who").textContent = "";
  location.hash = "";
  route();
});
route();
if (api.token()) whoami();
