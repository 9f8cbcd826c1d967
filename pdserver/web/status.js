// Live node status from /ws/status: CPU and memory over the last minutes, drawn on a canvas.
import * as api from "./api.js";
import { el } from "./dom.js";

const POINTS = 300;

// A telemetry message of /ws/status: {"type": "telemetry", "cpu": {"percent"}, "memory": {"percent"}, ...}.
function percent(message, part) {
  const value = message.type === "telemetry" && message[part] ? message[part].percent : null;
  return typeof value === "number" ? value : null;
}

function draw(canvas, series) {
  const width = canvas.width = canvas.clientWidth;
  const height = canvas.height = canvas.clientHeight;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, width, height);
  for (const [values, color] of series) {
    g.strokeStyle = color;
    g.beginPath();
    values.forEach((v, i) => {
      const x = width - (values.length - 1 - i) * (width / POINTS);
      const y = height - (v / 100) * height;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

// Appends a chart to ``container``; returns the function that closes the socket.
export function liveStatus(container) {
  const cpu = [], memory = [];
  const canvas = el("canvas", { class: "chart", role: "img", "aria-label": "CPU (blue) and memory (orange) use, percent" });
  const text = el("p", { "aria-live": "off" });
  container.append(el("section", { "aria-labelledby": "h-live" }, el("h2", { id: "h-live" }, "Live"), canvas, text));
  const ws = api.socket("/ws/status", (message) => {
    const c = percent(message, "cpu"), m = percent(message, "memory");
    if (c === null && m === null) return;
    if (c !== null) cpu.push(c);
    if (m !== null) memory.push(m);
    cpu.splice(0, cpu.length - POINTS);
    memory.splice(0, memory.length - POINTS);
    text.textContent = `CPU ${c ?? "?"} %, memory ${m ?? "?"} %`;
    draw(canvas, [[cpu, "#0a58ca"], [memory, "#d9480f"]]);
  });
  return () => ws.close();
}
