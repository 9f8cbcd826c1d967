// The node portal: a hash-routed page per section over the Edge API (api.js).
import * as api from "./api.js";
import { bytes, el, facts, say, show, table, when } from "./dom.js";
import { shell } from "./shell.js";
import { liveStatus } from "./status.js";
import { chute, network, nodeLog } from "./views.js";

const views = {
  overview, chutes, install, changes, audit, chute, logs: chute, "node-log": nodeLog, network,
};
const { route, onLeave } = shell({
  api, views, home: "overview", user: "paradrop",
  beforeView: (nav) => { for (const link of nav.querySelectorAll("[data-admin]")) link.hidden = !api.isAdmin(); },
});

async function overview() {
  const [health, hardware, software, telemetry] = await Promise.all([api.get("/api/v1/health"),
    api.get("/api/v1/info/hardware"), api.get("/api/v1/info/software"), api.get("/api/v1/info/telemetry")]);
  const cards = el("div", { class: "cards" },
    el("section", { "aria-labelledby": "h-node" }, el("h2", { id: "h-node" }, "Node"), facts([
      ["Status", health.status], ["Version", health.version], ["Up for", `${Math.round(health.uptime)} s`],
      ["OS", software.os], ["Kernel", software.kernel], ["Python", software.python_version]])),
    el("section", { "aria-labelledby": "h-hw" }, el("h2", { id: "h-hw" }, "Hardware"), facts([
      ["CPU", `${hardware.cpu} (${hardware.cpu_count} cores)`], ["Architecture", hardware.architecture],
      ["Memory", bytes(hardware.memory_total)], ["Disk", bytes(hardware.disk_total)],
      ["Wi-Fi radios", hardware.wifi_devices.join(", ") || "none"]])),
    el("section", { "aria-labelledby": "h-tel" }, el("h2", { id: "h-tel" }, "Telemetry"), facts([
      ["CPU", `${telemetry.cpu.percent} % of ${telemetry.cpu.count} cores`],
      ["Load", `${telemetry.load["1m"]}, ${telemetry.load["5m"]}, ${telemetry.load["15m"]}`],
      ["Memory", `${telemetry.memory.percent} % of ${bytes(telemetry.memory.total)}`],
      ["Disk", `${telemetry.disk.percent} % of ${bytes(telemetry.disk.total)}`],
      ["Host up for", `${Math.round(telemetry.uptime)} s`]])));
  show(el("h2", {}, "Overview"), cards);
  return liveStatus(cards);
}

async function chutes() {
  const list = await api.get("/api/v1/chutes");
  const act = (chute, action) => async () => {
    if (action === "delete" && !confirm(`Delete chute ${chute.name} and its data?`)) return;
    const method = action === "delete" ? "DELETE" : "POST";
    const path = `/api/v1/chutes/${encodeURIComponent(chute.name)}${action === "delete" ? "" : "/" + action}`;
    let id;
    try {
      ({ change_id: id } = await api.call(method, path));
    } catch (e) {
      say(`${action} ${chute.name} failed: ${e.message}`);
      return;
    }
    say(`${action} ${chute.name}: change ${id} queued`);
    follow(id, (m) => say(`${action} ${chute.name}: ${m.message}`), () => route());
  };
  show(el("h2", {}, "Chutes"), list.length === 0 ? el("p", {}, "No chute is installed. ", el("a", { href: "#/install" }, "Install one.")) :
    table("Installed chutes", [
      ["Name", (c) => el("a", { href: `#/chute/${encodeURIComponent(c.name)}` }, c.name)], ["Version", (c) => c.version],
      ["State", (c) => el("span", { class: `state-${c.state}`, "data-chute-state": c.name }, c.state)],
      ["Actions", (c) => el("div", { class: "actions" },
        ["start", "stop", "restart", "delete"].map((a) => el("button", {
          type: "button", class: a === "delete" ? "danger" : null, "aria-label": `${a} ${c.name}`, onclick: act(c, a) }, a)),
        el("a", { href: `#/chute/${encodeURIComponent(c.name)}`, "aria-label": `logs of ${c.name}` }, "logs"))],
    ], list));
}

// Follows a change's progress; ``onDone`` runs when the change ends, not when the person leaves the page.
function follow(id, onMessage, onDone) {
  let left = false;
  const ws = api.socket(`/ws/changes/${id}/stream`, onMessage, () => { if (!left && onDone) onDone(); });
  onLeave(() => { left = true; ws.close(); });
}

async function install() {
  const progress = el("ol", { class: "progress", id: "progress", "aria-live": "polite", "aria-label": "Progress" });
  const result = el("p", { id: "result", role: "status" });
  const form = el("form", { class: "stack", onsubmit: async (event) => {
    event.preventDefault();
    const file = form.querySelector("input[type=file]").files[0];
    progress.replaceChildren();
    result.textContent = "Uploading…";
    try {
      const { change_id: id } = await api.call("POST", "/api/v1/chutes", file);
      result.textContent = `Change ${id} queued.`;
      follow(id, (m) => {
        progress.append(el("li", {}, m.message));
        if (m.state) result.textContent = `Change ${id}: ${m.state}`;
        result.className = m.state ? `state-${m.state}` : "";
      });
    } catch (e) {
      result.textContent = `Install failed: ${e.message}`;
      result.className = "error";
    }
  } },
  el("label", {}, "Chute project archive (.tar.gz)",
    el("input", { type: "file", name: "archive", accept: ".tar.gz,.tgz,.tar,application/gzip", required: true })),
  el("button", { type: "submit" }, "Install"));
  show(el("h2", {}, "Install a chute"), form, result, progress);
}

async function changes() {
  const list = await api.get("/api/v1/changes?limit=50");
  show(el("h2", {}, "Changes"), table("Changes, newest first", [
    ["Id", (c) => c.id], ["Type", (c) => c.type], ["Target", (c) => c.target], ["User", (c) => c.user],
    ["State", (c) => el("span", { class: `state-${c.state}` }, c.state)], ["Created", (c) => when(c.created)],
    ["Result", (c) => (c.result && typeof c.result === "object" ? c.result.message || JSON.stringify(c.result) : c.result) ?? ""],
  ], list));
}

async function audit() {
  let list;
  try {
    list = await api.get("/api/v1/audit?limit=50");
  } catch (e) {
    if (e.status === 403) return show(el("h2", {}, "Audit log"), el("p", {}, "Your role may not read the audit log."));
    throw e;
  }
  const columns = list.length ? Object.keys(list[0]) : [];
  show(el("h2", {}, "Audit log"), table("Audit records, newest first",
    columns.map((k) => [k, (r) => (k === "time" ? when(r[k]) : typeof r[k] === "object" && r[k] !== null ? JSON.stringify(r[k]) : r[k] ?? "")]), list));
}

document.getElementById("logout").addEventListener("click", () => { api.forget(); location.hash = ""; route(); });
route();
