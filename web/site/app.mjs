// The page: reads the text field and the sampling controls, asks the worker (worker.mjs, where
// the model runs) and shows its answers. At most one request is in flight: while the worker is
// busy, only the newest request of each kind waits, so fast typing never builds a backlog.
const $ = (id) => document.getElementById(id);
const field = $("prefix"), oov = $("oov"), status = $("status");
const controls = { num: $("num"), temperature: $("temperature"), topK: $("top_k"), seed: $("seed") };
const MAX_SEED = 2 ** 32 - 1;
const SAMPLE_PAUSE_MS = 250;
let sampleTimer = null;

// Measured by `make bench-web` (bench/web.py): first suggestion after navigation start, and the
// time from each keystroke to its suggestions on screen, and the worker's share of it.
const timings = { firstSuggestion: null, updates: [], worker: [] };
window.charrnnTimings = timings;

const worker = new Worker(new URL("./worker.mjs", import.meta.url), { type: "module" });
let info = null;
let busy = false, nextId = 1;
const waiting = new Map(); // kind -> newest request not yet sent
const inFlight = new Map(); // id -> request

function send(request) {
  waiting.set(request.type, request);
  pump();
}

function pump() {
  if (busy || !info) return;
  const request = waiting.get("suggest") ?? waiting.get("sample");
  if (!request) return;
  waiting.delete(request.type);
  busy = true;
  request.id = nextId++;
  inFlight.set(request.id, request);
  worker.postMessage(request);
}

worker.onmessage = ({ data }) => {
  if (data.type === "ready") return onReady(data.info);
  if (data.type === "failed") return fail(`The model could not be loaded: ${data.message}`);
  const request = inFlight.get(data.id);
  inFlight.delete(data.id);
  busy = false;
  if (data.type === "error") fail(data.message);
  else if (data.type === "suggest") showSuggestions(request, data.result, data.ms);
  else if (data.type === "sample") showSamples(request, data.result);
  pump();
};
worker.onerror = (event) => fail(`The model worker failed: ${event.message ?? "unknown error"}`);

function fail(message) {
  status.textContent = message;
  console.error(message);
}

// ---------------------------------------------------------------- input

function codePoint(ch) {
  return `U+${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
}

/** Characters of `text` the model has no symbol for; the inline message names them. */
function checkVocabulary(text) {
  const known = new Set(info.characters);
  const missing = [...new Set([...text.normalize("NFC")].filter((ch) => !known.has(ch)))];
  field.setAttribute("aria-invalid", missing.length ? "true" : "false");
  oov.hidden = !missing.length;
  if (missing.length) {
    const shown = missing.map((ch) => `“${ch}” (${codePoint(ch)})`).join(", ");
    oov.textContent = `Not in this model's vocabulary: ${shown}. Remove ${missing.length > 1 ? "them" : "it"} to get suggestions.`;
  }
  return missing.length === 0;
}

function onInput() {
  const text = field.value;
  updateLink();
  const ok = checkVocabulary(text);
  for (const id of ["next", "completions", "samples", "greedy"]) $(id).classList.toggle("stale", !ok);
  if (!ok) {
    waiting.clear();
    return;
  }
  send({ type: "suggest", prefix: text, top: 8, count: 5, typedAt: performance.now() });
  // samples once typing pauses: a sampling batch costs several suggestions, and the next key's
  // suggestions would wait behind it in the worker
  $("samples").classList.add("stale");
  clearTimeout(sampleTimer);
  sampleTimer = setTimeout(requestSamples, SAMPLE_PAUSE_MS);
}

function readControls() {
  const num = Math.min(50, Math.max(1, Math.round(Number(controls.num.value) || 5)));
  let temperature = Number(controls.temperature.value);
  if (!(temperature >= 0) || !Number.isFinite(temperature)) temperature = 0.8; // 0: greedy
  const topK = Math.max(0, Math.round(Number(controls.topK.value) || 0));
  let seed = Number(controls.seed.value);
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) seed = randomSeed();
  controls.num.value = num; controls.temperature.value = temperature; controls.topK.value = topK; controls.seed.value = seed;
  return { num, temperature, topK, seed };
}

function requestSamples() {
  clearTimeout(sampleTimer);
  if (!checkVocabulary(field.value)) return;
  send({ type: "sample", prefix: field.value, ...readControls() });
  updateLink();
}

function randomSeed() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** The address of what is on screen: ?prefix=&num=&temperature=&top_k=&seed= */
function updateLink() {
  const params = new URLSearchParams({ prefix: field.value, num: controls.num.value,
    temperature: controls.temperature.value, top_k: controls.topK.value, seed: controls.seed.value });
  const url = `${location.pathname}?${params}`;
  $("share").href = url;
  history.replaceState(null, "", url);
}

// ---------------------------------------------------------------- output

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (label) b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function useText(text) {
  field.value = text;
  field.focus();
  onInput();
}

function percent(p) {
  return p >= 0.995 ? "100%" : p >= 0.001 ? `${(p * 100).toFixed(1)}%` : "<0.1%";
}

function showSuggestions(request, result, workerMs) {
  if (request.prefix !== field.value) return; // typed on meanwhile: a newer request is waiting
  const next = $("next");
  next.replaceChildren(...result.next.map(({ char, p }) => {
    const li = document.createElement("li");
    const shown = char === "" ? "⏎ end" : char === " " ? "␣ space" : char;
    const b = button("", char === "" ? `end the name here, ${percent(p)}` : `add “${char}”, ${percent(p)}`,
      () => (char === "" ? useText(field.value) : useText(field.value + char)));
    b.style.setProperty("--p", `${(p * 100).toFixed(1)}%`);
    b.innerHTML = "<span class=char></span><span class=p></span>";
    b.querySelector(".char").textContent = shown;
    b.querySelector(".p").textContent = percent(p);
    li.append(b);
    li.dataset.char = char;
    li.dataset.p = String(p);
    return li;
  }));
  $("greedy").value = result.greedy;
  const list = $("completions");
  list.replaceChildren(...result.completions.map(({ name, p }) => {
    const li = document.createElement("li");
    li.dataset.name = name;
    const why = document.createElement("span");
    why.className = "why";
    why.textContent = ` (${percent(p)} of names)`;
    li.append(button(name, null, () => useText(name)), why);
    return li;
  }));
  for (const el of [next, list, $("greedy")]) el.classList.remove("stale");
  list.dataset.prefix = request.prefix;
  status.textContent = "";
  const now = performance.now();
  timings.updates.push(now - request.typedAt);
  timings.worker.push(workerMs);
  if (timings.firstSuggestion === null) timings.firstSuggestion = now;
}

function showSamples(request, names) {
  if (request.prefix !== field.value) return;
  const list = $("samples");
  list.replaceChildren(...names.map((name) => {
    const li = document.createElement("li");
    li.dataset.name = name;
    li.append(button(name, null, () => useText(name)));
    return li;
  }));
  list.classList.remove("stale");
  list.dataset.key = JSON.stringify([request.prefix, request.num, request.temperature, request.topK, request.seed]);
}

/** What the model is: "GRU 1×96" for one model; for an ensemble (vocab.json "members" > 1) how
 * many models it averages, and its state, their states side by side. */
function modelShape({ cell, numLayers, hiddenSize, members }) {
  if (!(members > 1)) return `${cell.toUpperCase()} ${numLayers}×${hiddenSize}`;
  const kind = cell === "mixed" ? "models of mixed cells" : `${cell.toUpperCase()} models`;
  return `ensemble of ${members} ${kind}, state ${numLayers}×${hiddenSize} in all`;
}

function onReady(modelInfo) {
  info = modelInfo;
  const integrity = info.integrity === "ok" ? "checksum verified"
    : "checksum not verified (this browser offers no Web Crypto here: serve the page from localhost or https)";
  $("model-info").textContent = `Model ${info.fingerprint} · vocabulary of ${info.vocabSize} symbols · ` +
    `${modelShape(info)} · ${integrity} · onnxruntime-web ${info.ortVersion}`;
  status.textContent = "";
  onInput();
}

// ---------------------------------------------------------------- start: the URL's values

const params = new URLSearchParams(location.search);
field.value = params.get("prefix") ?? "";
for (const [key, input] of [["num", controls.num], ["temperature", controls.temperature], ["top_k", controls.topK], ["seed", controls.seed]]) {
  if (params.has(key)) input.value = params.get(key);
}
if (controls.seed.value === "") controls.seed.value = randomSeed();
field.addEventListener("input", onInput);
$("sampling").addEventListener("submit", (event) => { event.preventDefault(); requestSamples(); });
$("reseed").addEventListener("click", () => { controls.seed.value = randomSeed(); requestSamples(); });
