"""The HTML page of `charnn inspect activations --html`: one file with its CSS and JavaScript
inline and its data in a JSON script element, so it opens from file:// with no network.
charnn.inspect.page fills __CHARNN_TITLE__ and __CHARNN_DATA__."""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__CHARNN_TITLE__</title>
<style>
  :root { --fg: #1d232a; --muted: #65707c; --line: #d8dde3; --panel: #f6f7f9; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); }
  header { padding: 10px 16px; border-bottom: 1px solid var(--line); display: flex; flex-wrap: wrap;
           gap: 6px 18px; align-items: baseline; }
  header h1 { font-size: 16px; margin: 0; }
  header .facts { color: var(--muted); }
  .controls { padding: 8px 16px; border-bottom: 1px solid var(--line); display: flex; flex-wrap: wrap;
              gap: 8px 14px; align-items: center; background: var(--panel); }
  .controls label { color: var(--muted); }
  .controls input[type=number] { width: 5.5em; }
  .legend { display: inline-flex; align-items: center; gap: 6px; color: var(--muted); }
  .legend .bar { width: 140px; height: 12px; border: 1px solid var(--line); }
  main { display: grid; grid-template-columns: minmax(0, 1fr) 300px; gap: 0; }
  #text { padding: 14px 16px; font: 15px/1.6 ui-monospace, "DejaVu Sans Mono", Menlo, monospace;
          white-space: pre-wrap; word-break: break-all; }
  .tok { cursor: pointer; border-radius: 2px; }
  .tok.empty { padding-left: 3px; }
  .tok.nl { color: #9aa4ae; }
  .tok.on { outline: 2px solid #1d232a; }
  aside { border-left: 1px solid var(--line); padding: 12px 14px; background: var(--panel); min-height: 100vh; }
  aside h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted);
             margin: 14px 0 6px; }
  aside h2:first-child { margin-top: 0; }
  #info .big { font: 18px ui-monospace, monospace; }
  #info .muted, .muted { color: var(--muted); }
  table.guesses { width: 100%; border-collapse: collapse; font: 13px ui-monospace, monospace; }
  table.guesses td { padding: 1px 4px; }
  table.guesses td.p { text-align: right; width: 4.5em; }
  table.guesses .bar { height: 8px; background: #4c78a8; }
  table.guesses tr.hit td { font-weight: bold; }
  #found .prop { margin: 6px 0 2px; }
  #found button { font: 12px ui-monospace, monospace; margin: 1px 2px 1px 0; padding: 1px 5px; cursor: pointer; }
  #found button.cur { background: #1d232a; color: white; }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <span class="facts" id="facts"></span>
</header>
<div class="controls">
  <label>layer <select id="layer"></select></label>
  <label>kind <select id="kind"></select></label>
  <label>unit <input id="unit" type="number" min="0" value="0"></label>
  <button id="prev" title="previous unit (left arrow)">&#9664;</button>
  <button id="next" title="next unit (right arrow)">&#9654;</button>
  <label title="stretch the colours over this unit's own range"><input id="stretch" type="checkbox"> stretch</label>
  <span class="legend"><span id="lo"></span><span class="bar" id="bar"></span><span id="hi"></span></span>
  <span class="muted" id="unitnote"></span>
</div>
<main>
  <div id="text"></div>
  <aside>
    <h2>Token</h2>
    <div id="info"><span class="muted">Point at a character to see what the model expected there.</span></div>
    <h2>Units that track the text</h2>
    <div id="found"></div>
  </aside>
</main>
<script type="application/json" id="data">__CHARNN_DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const cache = {};
const KIND_LABEL = {h: "hidden state h", c: "cell state c (coloured by tanh c)", i: "input gate i",
  f: "forget gate f", g: "candidate g", o: "output gate o", r: "reset gate r", z: "update gate z",
  n: "candidate n", loss: "loss paid (nats)"};
const SIGMOID = new Set(["i", "f", "o", "r", "z"]);

function values(kind, layer) {            // Uint8Array (H * T), unit-major, decoded once
  const key = kind + ":" + layer;
  if (!cache[key]) {
    const bin = atob(D.arrays[key].b64);
    const a = new Uint8Array(bin.length);
    for (let k = 0; k < bin.length; k++) a[k] = bin.charCodeAt(k);
    cache[key] = a;
  }
  return cache[key];
}
function unitValue(kind, layer, unit, t) {
  if (kind === "loss") return D.loss[t];
  const spec = D.arrays[kind + ":" + layer];
  const q = values(kind, layer)[unit * D.tokens + t];
  return spec.lo + q * (spec.hi - spec.lo) / 255;
}
function mix(a, b, s) { return a.map((x, k) => Math.round(x + (b[k] - x) * s)); }
const WHITE = [255, 255, 255], RED = [214, 39, 40], BLUE = [31, 119, 180], GREEN = [44, 160, 44], LOSS = [148, 52, 110];
function colour(kind, v, range) {          // a CSS colour for a value of this kind
  if (v === null || v === undefined || Number.isNaN(v)) return "transparent";
  const [lo, hi] = range || [SIGMOID.has(kind) || kind === "loss" ? 0 : -1, kind === "loss" ? D.loss_scale : 1];
  let rgb;
  if (kind === "loss") rgb = mix(WHITE, LOSS, Math.min(1, v / hi));
  else if (SIGMOID.has(kind)) rgb = mix(WHITE, GREEN, Math.max(0, Math.min(1, (v - lo) / ((hi - lo) || 1))));
  else {
    const s = Math.max(-1, Math.min(1, (kind === "c" && !range ? Math.tanh(v) : v) / (hi || 1)));
    rgb = s >= 0 ? mix(WHITE, RED, s) : mix(WHITE, BLUE, -s);
  }
  return "rgb(" + rgb.join(",") + ")";
}
function visible(s) {                      // a token as visible text
  if (s === "") return "\u2205";
  return s.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5")
          .replace(/[\ud800-\udfff]/gu, "\ufffd");
}

const sel = {layer: D.start.layer, kind: D.start.kind, unit: D.start.unit};
let spans = [], pinned = null;

function buildText() {
  const box = $("text");
  const frag = document.createDocumentFragment();
  D.pieces.forEach((p, t) => {
    const s = document.createElement("span");
    s.className = "tok" + (p === "" ? " empty" : "") + (p === "\n" ? " nl" : "");
    s.textContent = p === "\n" ? "\u21b5\n" : p.replace(/[\ud800-\udfff]/gu, "\ufffd");
    s.dataset.i = t;
    frag.appendChild(s);
    spans.push(s);
  });
  box.appendChild(frag);
  box.addEventListener("mouseover", (e) => {
    if (e.target.dataset.i !== undefined && pinned === null) show(+e.target.dataset.i);
  });
  box.addEventListener("click", (e) => {
    if (e.target.dataset.i === undefined) return;
    const t = +e.target.dataset.i;
    if (pinned !== null) spans[pinned].classList.remove("on");
    pinned = pinned === t ? null : t;
    if (pinned !== null) spans[pinned].classList.add("on");
    show(t);
  });
}
function unitRange() {                     // --stretch: [lo, hi] of the unit over the text
  let lo = Infinity, hi = -Infinity;
  for (let t = 0; t < D.tokens; t++) {
    const v = unitValue(sel.kind, sel.layer, sel.unit, t);
    if (v !== null && !Number.isNaN(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  if (!(lo <= hi)) return null;
  if (SIGMOID.has(sel.kind) || sel.kind === "loss") return [lo, hi];
  const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
  return [-m, m];
}
function paint() {
  const range = $("stretch").checked ? unitRange() : null;
  for (let t = 0; t < spans.length; t++) {
    spans[t].style.backgroundColor = colour(sel.kind, unitValue(sel.kind, sel.layer, sel.unit, t), range);
  }
  const isLoss = sel.kind === "loss";
  $("unit").disabled = $("layer").disabled = $("prev").disabled = $("next").disabled = isLoss;
  $("unit").value = sel.unit; $("layer").value = sel.layer; $("kind").value = sel.kind;
  const [lo, hi] = range || [isLoss || SIGMOID.has(sel.kind) ? 0 : -1, isLoss ? D.loss_scale : 1];
  const num = (x) => String(+x.toPrecision(3));
  $("lo").textContent = (sel.kind === "c" && !range ? "tanh c = " : "") + num(lo);
  $("hi").textContent = num(hi) + (isLoss ? " nats" : "");
  const stops = isLoss ? [colour("loss", 0), colour("loss", D.loss_scale)]
              : SIGMOID.has(sel.kind) ? [colour("f", 0), colour("f", 1)]
              : [colour("h", -1), colour("h", 0), colour("h", 1)];
  $("bar").style.background = "linear-gradient(to right," + stops.join(",") + ")";
  $("unitnote").textContent = isLoss ? KIND_LABEL.loss
    : "layer " + sel.layer + ", " + KIND_LABEL[sel.kind] + ", unit " + sel.unit + " of " + D.hidden;
  document.querySelectorAll("#found button").forEach((b) => b.classList.toggle("cur",
      b.dataset.kind === sel.kind && +b.dataset.layer === sel.layer && +b.dataset.unit === sel.unit));
  if (pinned !== null) show(pinned);
}
function fmt(x, d) { return x === null || x === undefined ? "\u2014" : x.toFixed(d); }
function show(t) {
  const next = t + 1 < D.pieces.length ? D.ids[t + 1] : null;
  let rows = "";
  for (const [v, p] of D.guesses[t]) {
    const bar = "<div class='bar' style='width:" + Math.max(1, Math.round(120 * p)) + "px'></div>";
    rows += "<tr" + (v === next ? " class='hit'" : "") + "><td>" + esc(visible(D.vocab[v])) + "</td>" +
      "<td class='p'>" + (100 * p).toFixed(1) + "%</td><td>" + bar + "</td></tr>";
  }
  const unitLine = sel.kind === "loss" ? ""
    : "<div>unit value <b class='value'>" + fmt(unitValue(sel.kind, sel.layer, sel.unit, t), 3) + "</b></div>";
  $("info").innerHTML = "<div class='big'>" + esc(visible(D.pieces[t])) + "</div>" +
    "<div class='muted'>token " + t + " of " + D.tokens + "</div>" +
    "<div>loss paid <b class='loss'>" + fmt(D.loss[t], 2) + "</b> nats" +
    (t === 0 ? " <span class='muted'>(no context)</span>" : "") + "</div>" +
    unitLine + "<h2>Next-token guesses</h2><table class='guesses'>" + rows + "</table>" +
    (next === null ? "" : "<div class='muted'>bold: what came next</div>");
}
function esc(s) { return s.replace(/[&<>"']/g, (ch) => "&#" + ch.charCodeAt(0) + ";"); }
function buildControls() {
  for (let l = 0; l < D.layers; l++) $("layer").add(new Option(String(l), String(l)));
  for (const k of [...D.kinds, "loss"]) $("kind").add(new Option(KIND_LABEL[k], k));
  $("unit").max = D.hidden - 1;
  $("layer").addEventListener("change", () => { sel.layer = +$("layer").value; paint(); });
  $("kind").addEventListener("change", () => { sel.kind = $("kind").value; paint(); });
  $("unit").addEventListener("change", () => { setUnit(+$("unit").value); });
  $("stretch").addEventListener("change", paint);
  $("unit").addEventListener("input", () => { if ($("unit").value !== "") setUnit(+$("unit").value); });
  $("prev").addEventListener("click", () => setUnit(sel.unit - 1));
  $("next").addEventListener("click", () => setUnit(sel.unit + 1));
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "ArrowRight") setUnit(sel.unit + 1);
    if (e.key === "ArrowLeft") setUnit(sel.unit - 1);
  });
}
function setUnit(u) { sel.unit = Math.max(0, Math.min(D.hidden - 1, Math.floor(u) || 0)); paint(); }
function buildFound() {
  const box = $("found");
  if (!D.found.length) {
    box.innerHTML = "<span class='muted'>Run with --find to list the units that track quotes, brackets, " +
      "line position, ...</span>";
    return;
  }
  for (const f of D.found) {
    const div = document.createElement("div");
    div.className = "prop";
    div.innerHTML = "<div>" + esc(f.description) + " <span class='muted'>(" + esc(f.property) + ")</span></div>";
    if (!f.units.length) div.innerHTML += "<div class='muted'>not in this text</div>";
    for (const u of f.units) {
      const b = document.createElement("button");
      Object.assign(b.dataset, {kind: u.kind, layer: u.layer, unit: u.unit});
      b.textContent = "L" + u.layer + " " + u.kind + " " + u.unit + "  r=" + (u.r >= 0 ? "+" : "") + u.r.toFixed(2);
      b.addEventListener("click", () => { Object.assign(sel, {kind: u.kind, layer: u.layer, unit: u.unit}); paint(); });
      div.appendChild(b);
    }
    box.appendChild(div);
  }
}
$("title").textContent = D.title;
$("facts").textContent = D.facts;
buildControls(); buildText(); buildFound(); paint();
document.body.dataset.ready = "1";
</script>
</body>
</html>
"""
