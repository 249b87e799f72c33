// The model runs here, off the page's main thread, so typing never waits for onnxruntime-web.
// Messages in: {id, type: "suggest" | "sample", ...}; out: {type: "ready" | "failed"} once, then
// {id, type, result} or {id, type: "error", message, missing}.
import * as ort from "./ort/ort.wasm.min.mjs";
import { CharRNN } from "./charrnn.mjs";

// One thread: no cross-origin isolation headers needed, and a step of this model is too small
// to share. The wasm files come from the site itself (no CDN).
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function load() {
  const started = performance.now();
  const site = await (await fetch(new URL("./site.json", import.meta.url))).json();
  const [step, graph] = await Promise.all([fetchBytes(site.model), site.generate_model ? fetchBytes(site.generate_model) : null]);
  const model = await CharRNN.load(ort, step, {
    generateBytes: graph, source: site.model, generateSource: site.generate_model,
    sessionOptions: { executionProviders: ["wasm"], graphOptimizationLevel: "all" },
  });
  const m = model.manifest;
  postMessage({ type: "ready", info: {
    fingerprint: model.fingerprint, vocabSize: model.vocabSize, characters: model.characters,
    cell: m.cell, hiddenSize: m.hidden_size, numLayers: m.num_layers, members: m.members ?? 1,
    integrity: model.integrity,
    oneGraph: Boolean(model.graph), ortVersion: site.onnxruntime_web, loadMs: performance.now() - started,
  } });
  return model;
}

const ready = load();
ready.catch((err) => postMessage({ type: "failed", message: err.message }));

onmessage = async ({ data }) => {
  const { id, type } = data;
  try {
    const model = await ready;
    const started = performance.now();
    let result;
    if (type === "suggest") result = await model.suggest(data.prefix, { top: data.top, count: data.count });
    else if (type === "sample") {
      result = await model.generate(data.prefix, { num: data.num, temperature: data.temperature,
        topK: data.topK, seed: data.seed });
    } else throw new Error(`unknown request type ${JSON.stringify(type)}`);
    postMessage({ id, type, result, ms: performance.now() - started });
  } catch (err) {
    postMessage({ id, type: "error", request: type, message: err.message, missing: err.missing ?? null });
  }
};
