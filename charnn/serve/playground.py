# ruff: noqa: E501  (the page is HTML, CSS and JavaScript, not Python)
"""The playground page served at `/`: one self-contained HTML page (inline CSS and JavaScript,
system fonts, nothing fetched from anywhere but this server) that talks to the same API as any
other client: GET /v1/models for the list (config, loss curve), POST /v1/completions with
"stream": true for the text, read as server-sent events from fetch() so Stop can abort it (the
server then frees the stream's slot at once). With `--token` it asks for the token once and keeps
it in the tab's sessionStorage.

Element ids (the browser test and scripts use them): #model #prime #temperature #top_k #top_p
#length #seed #generate #stop #output #generated #status #token #config #curve.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>charnn playground</title>
<style>
  :root { --ink: #1d232a; --mute: #66707a; --line: #d8dde2; --bg: #f6f7f9; --accent: #2f6fdb; --prime: #8a5a00; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: var(--bg); }
  header { display: flex; align-items: baseline; gap: 1em; padding: 14px 22px; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0; }
  header span { color: var(--mute); font-size: 13px; }
  main { display: grid; grid-template-columns: 300px 1fr; gap: 18px; padding: 18px 22px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
  label { display: block; font-size: 12px; color: var(--mute); margin: 10px 0 3px; text-transform: uppercase; letter-spacing: .04em; }
  select, input, textarea { width: 100%; font: inherit; padding: 6px 8px; border: 1px solid var(--line); border-radius: 5px; background: #fff; }
  textarea { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 14px; resize: vertical; }
  .row { display: grid; grid-template-columns: 1fr 1fr; gap: 0 10px; }
  .buttons { display: flex; gap: 8px; margin-top: 14px; }
  button { flex: 1; font: inherit; padding: 8px; border-radius: 5px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
  button#stop { background: #fff; color: var(--accent); }
  button:disabled { opacity: .45; cursor: default; }
  #output { min-height: 420px; margin: 0; white-space: pre-wrap; word-break: break-word; font: 14px/1.5 ui-monospace, "DejaVu Sans Mono", monospace; }
  #output .prime { color: var(--prime); }
  #status { color: var(--mute); font-size: 13px; margin-top: 8px; min-height: 1.4em; }
  #status.error { color: #b3261e; }
  #config { font-size: 13px; color: var(--mute); margin-top: 12px; }
  #config b { color: var(--ink); font-weight: 600; }
  #curve { width: 100%; height: 100px; margin-top: 2px; }
  .caption { font-size: 12px; color: var(--mute); margin-top: 10px; }
  #auth { display: none; }
</style>
</head>
<body>
<header><h1>charnn playground</h1><span>a recurrent language model, sampling as you watch</span></header>
<main>
  <section>
    <div id="auth"><label for="token">Token</label><input id="token" type="password" placeholder="the server's --token"></div>
    <label for="model">Model</label><select id="model"></select>
    <label for="prime">Prime</label><textarea id="prime" rows="4" placeholder="Text to start from"></textarea>
    <div class="row">
      <div><label for="temperature">Temperature</label><input id="temperature" type="number" min="0" max="2" step="0.05" value="0.8"></div>
      <div><label for="length">Length</label><input id="length" type="number" min="1" step="50" value="500"></div>
      <div><label for="top_k">Top-k</label><input id="top_k" type="number" min="0" step="1" value="0"></div>
      <div><label for="top_p">Top-p</label><input id="top_p" type="number" min="0.01" max="1" step="0.05" value="1"></div>
    </div>
    <label for="seed">Seed</label><input id="seed" type="number" min="0" step="1" placeholder="random">
    <div class="buttons"><button id="generate">Generate</button><button id="stop" disabled>Stop</button></div>
    <div id="config"></div>
    <div class="caption">validation loss by training step</div>
    <svg id="curve" viewBox="0 0 300 120" preserveAspectRatio="none" aria-label="validation loss by step"></svg>
  </section>
  <section>
    <pre id="output"><span class="prime" id="shown-prime"></span><span id="generated"></span></pre>
    <div id="status"></div>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let models = [], controller = null;

function headers() {
  const h = {"Content-Type": "application/json"};
  const t = sessionStorage.getItem("charnn-token");
  if (t) h["Authorization"] = "Bearer " + t;
  return h;
}
function status(text, error) { $("status").textContent = text; $("status").className = error ? "error" : ""; }
async function failure(resp) {
  if (resp.status === 401) { $("auth").style.display = "block"; return "this server needs its token: enter it above"; }
  try { return (await resp.json()).error.message; } catch (e) { return "HTTP " + resp.status; }
}

async function loadModels() {
  const resp = await fetch("/v1/models", {headers: headers()});
  if (!resp.ok) { status(await failure(resp), true); return; }
  models = (await resp.json()).data;
  $("model").innerHTML = "";
  for (const m of models) { const o = document.createElement("option"); o.value = o.textContent = m.id; $("model").appendChild(o); }
  showModel();
}

function showModel() {
  const m = models.find((x) => x.id === $("model").value);
  if (!m) return;
  const c = m.charnn, cfg = c.config, loss = c.best_val_loss;
  const bpc = loss == null ? "" : ` (${(loss / c.chars_per_token / Math.LN2).toFixed(3)} bits/char)`;
  $("config").innerHTML = `<b>${cfg.layers} &times; ${cfg.hidden} ${cfg.cell.toUpperCase()}</b>, ` +
    `${c.tokenizer} tokens (${c.vocab_size}), ${c.parameters.toLocaleString()} parameters<br>` +
    `validation loss <b>${loss == null ? "?" : loss.toFixed(4)}</b> nats/token${bpc}, step ${c.step ?? "?"}`;
  drawCurve(c.history);
}

function drawCurve(history) {
  const svg = $("curve"), pts = history.filter((h) => h.val_loss != null && h.step != null);
  svg.innerHTML = "";
  if (pts.length < 2) return;
  const xs = pts.map((h) => h.step), ys = pts.map((h) => h.val_loss);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const X = (x) => 4 + (x - x0) / ((x1 - x0) || 1) * 292, Y = (y) => 8 + (y1 - y) / ((y1 - y0) || 1) * 96;
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts.map((h) => `${X(h.step).toFixed(1)},${Y(h.val_loss).toFixed(1)}`).join(" "));
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#2f6fdb"); line.setAttribute("stroke-width", "2");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  svg.appendChild(line);
  for (const [y, v] of [[10, y1], [116, y0]]) {
    const t = document.createElementNS("http://www.w3.org/2000/svg", "text");
    t.setAttribute("x", "296"); t.setAttribute("y", String(y)); t.setAttribute("text-anchor", "end");
    t.setAttribute("font-size", "10"); t.setAttribute("fill", "#66707a"); t.textContent = v.toFixed(3);
    svg.appendChild(t);
  }
}

function request() {
  const body = {model: $("model").value, prompt: $("prime").value, stream: true,
    max_tokens: parseInt($("length").value, 10), temperature: parseFloat($("temperature").value),
    top_k: parseInt($("top_k").value, 10) || 0, top_p: parseFloat($("top_p").value)};
  if ($("seed").value !== "") body.seed = parseInt($("seed").value, 10);
  return body;
}

async function generate() {
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem("charnn-token", token);
  if (!models.length) await loadModels();
  $("shown-prime").textContent = $("prime").value;
  $("generated").textContent = "";
  controller = new AbortController();
  $("generate").disabled = true; $("stop").disabled = false;
  const t0 = performance.now();
  let chars = 0, ended = "stopped";
  status("generating...");
  try {
    const resp = await fetch("/v1/completions", {method: "POST", headers: headers(), body: JSON.stringify(request()), signal: controller.signal});
    if (!resp.ok) { status(await failure(resp), true); return; }
    const reader = resp.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += dec.decode(value, {stream: true});
      let at;
      while ((at = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, at); buf = buf.slice(at + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const choice = JSON.parse(data).choices[0];
          if (!choice) continue;
          $("generated").textContent += choice.text;
          chars += [...choice.text].length;
          if (choice.finish_reason) ended = choice.finish_reason === "stop" ? "reached a stop text" : "done";
        }
      }
      const secs = (performance.now() - t0) / 1000;
      status(`${chars} characters, ${(chars / Math.max(secs, 1e-3)).toFixed(0)} chars/s`);
    }
  } catch (e) {
    if (e.name !== "AbortError") { status(String(e), true); return; }
  } finally {
    $("generate").disabled = false; $("stop").disabled = true; controller = null;
  }
  const secs = (performance.now() - t0) / 1000;
  status(`${chars} characters in ${secs.toFixed(2)} s (${(chars / Math.max(secs, 1e-3)).toFixed(0)} chars/s), ${ended}`);
}

$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
$("model").addEventListener("change", showModel);
$("token").addEventListener("change", () => { sessionStorage.setItem("charnn-token", $("token").value.trim()); loadModels(); });
$("prime").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(); });
loadModels();
</script>
</body>
</html>
"""
