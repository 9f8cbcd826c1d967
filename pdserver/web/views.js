// The portal's monitoring views: a chute (services with CPU and memory, networks, live output), the node's own
// log, and the host's network (host config, interfaces, DHCP leases). Each returns the function that closes its
// websocket when the person leaves the view.
import * as api from "./api.js";
import { bytes, el, show, table, when } from "./dom.js";

const MAX_LINES = 1000;

// A <pre> that shows the last MAX_LINES lines, redrawn at most once a frame, kept scrolled to the end.
function liveText(attributes) {
  const pre = el("pre", { class: "logs", tabindex: "0", ...attributes });
  const lines = [];
  let pending = false;
  const render = () => {
    pending = false;
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = lines.join("\n");
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  };
  pre.add = (line) => {
    lines.push(line);
    lines.splice(0, lines.length - MAX_LINES);
    if (!pending) { pending = true; requestAnimationFrame(render); }
  };
  return pre;
}

function follow(path, pre, state, what, format) {
  state.textContent = "Connecting…";
  const ws = api.socket(path, (message) => pre.add(format(message)), (event) => {
    state.textContent = event.code === 1008 ? `Refused: ${event.reason}` : `The ${what} stream ended.`;
  });
  ws.addEventListener("open", () => { state.textContent = `Following ${what} live.`; });
  return () => ws.close();
}

const percent = (fraction) => (typeof fraction === "number" ? `${(fraction * 100).toFixed(1)} %` : "…");
const memory = (usage, limit) => `${bytes(usage.memory_bytes)}${limit ? ` of ${bytes(limit)}` : ""}`;

// Keeps the CPU and memory cells of a chute's services current from the "usage" messages of /ws/status.
function liveUsage(name, services) {
  const limits = Object.fromEntries(services.map((s) => [s.name, s.memory]));
  const ws = api.socket("/ws/status", (message) => {
    if (message.type !== "usage") return;
    for (const [service, usage] of Object.entries(message.chutes[name] || {})) {
      const cpu = document.querySelector(`[data-cpu="${CSS.escape(service)}"]`);
      const used = document.querySelector(`[data-memory="${CSS.escape(service)}"]`);
      if (cpu) cpu.textContent = percent(usage.cpu_fraction);
      if (used) used.textContent = memory(usage, limits[service]);
    }
  });
  return () => ws.close();
}

export async function chute(name) {
  const path = `/api/v1/chutes/${encodeURIComponent(name)}`;
  const [info, networks] = await Promise.all([api.get(path), api.get(`${path}/networks`)]);
  const state = el("p", { id: "logs-state", role: "status" });
  const pre = liveText({ id: "logs", "aria-label": `Output of ${name}` });
  show(el("h2", {}, `Chute ${name}`),
    el("p", {}, `Version ${info.version}, `, el("span", { class: `state-${info.state}` }, info.state)),
    table("Services", [
      ["Service", (s) => s.name], ["Status", (s) => el("span", { class: `state-${s.status}` }, s.status)],
      ["Health", (s) => s.health ?? ""], ["Restarts", (s) => s.restart_count],
      ["CPU", (s) => el("span", { "data-cpu": s.name }, s.usage ? percent(s.usage.cpu_fraction) : "")],
      ["Memory", (s) => el("span", { "data-memory": s.name }, s.usage ? memory(s.usage, s.memory) : "")],
      ["Address", (s) => s.address ?? ""]], info.service_states),
    el("h3", {}, "Networks"),
    networks.length ? table("Host networks of the chute", [
      ["Interface", (n) => n.name], ["Type", (n) => n.type], ["Service", (n) => n.service],
      ["Subnet", (n) => n.subnet ?? ""], ["Radio", (n) => n.radio ?? ""], ["VLAN", (n) => n.vlan_id ?? ""]], networks)
      : el("p", {}, "No host network (Wi-Fi access point, VLAN)."),
    el("h3", {}, "Output"), state, pre);
  const closers = [liveUsage(name, info.service_states), follow(`/ws/chute_logs/${encodeURIComponent(name)}`, pre,
    state, `the output of ${name}`, (m) => `${m.service}: ${m.message}`)];
  return () => closers.forEach((close) => close());
}

export async function nodeLog() {
  const state = el("p", { id: "node-log-state", role: "status" });
  const pre = liveText({ id: "node-log", "aria-label": "The node's log" });
  show(el("h2", {}, "Node log"), state, pre);
  return follow("/ws/paradrop_logs", pre, state, "the node's log",
    (l) => `${when(l.time)} ${l.level} [${l.namespace}] ${l.text}`);
}

export async function network() {
  const [hostconfig, interfaces, devices] = await Promise.all([api.get("/api/v1/config/hostconfig"),
    api.get("/api/v1/network/interfaces"), api.get("/api/v1/network/devices")]);
  show(el("h2", {}, "Network"),
    el("h3", {}, "Interfaces"),
    table("Interfaces of the node", [
      ["Name", (i) => i.name], ["Kind", (i) => i.kind ?? ""], ["Up", (i) => (i.up ? "yes" : "no")],
      ["Addresses", (i) => (i.addresses || []).join(", ")], ["MAC", (i) => i.mac ?? ""],
      ["Bridge", (i) => i.master ?? ""]], interfaces),
    el("h3", {}, "Devices (DHCP leases)"),
    devices.length ? table("Devices on the node's networks", [
      ["MAC", (d) => d.mac_addr], ["Address", (d) => d.ip_addr], ["Host name", (d) => d.hostname ?? ""],
      ["Network", (d) => `${d.chute ?? "host"} ${d.network}`]], devices) : el("p", {}, "No lease."),
    el("h3", {}, "Host config"),
    el("pre", { class: "logs", id: "hostconfig", tabindex: "0" }, JSON.stringify(hostconfig, null, 2)));
}
