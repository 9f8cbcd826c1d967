// Building DOM nodes without innerHTML: text always goes in as text, never as markup.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function show(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children);
  return main;
}

export function say(text) { document.getElementById("status").textContent = text; }

export function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

export function bytes(n) {
  if (typeof n !== "number") return String(n ?? "");
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// A table that turns into labelled blocks on a phone-size screen.
export function table(caption, columns, rows) {
  return el("div", { class: "scroll" }, el("table", { class: "responsive" },
    el("caption", { class: "skip" }, caption),
    el("thead", {}, el("tr", {}, columns.map(([label]) => el("th", { scope: "col" }, label)))),
    el("tbody", {}, rows.map((row) => el("tr", {}, columns.map(([label, cell]) => el("td", { "data-label": label }, cell(row))))))));
}

export function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}
