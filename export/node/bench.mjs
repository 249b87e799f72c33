// The page's work in Node.js, for `make bench-web` (bench/web.py): load charrnn.onnx and
// charrnn_generate.onnx, answer the first suggestion, then one suggestion per keystroke.
//
//   node bench.mjs --model M --generate-model G --rounds 5 '["M","Ma",...]'   -> JSON on stdout
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import ort from "onnxruntime-node";
import { CharRNN } from "../../web/charrnn.mjs";

const args = process.argv.slice(2);
const flag = (name) => args[args.indexOf(name) + 1];
const prefixes = JSON.parse(args[args.length - 1]);
const rounds = Number(flag("--rounds"));
const options = { executionProviders: ["cpu"], intraOpNumThreads: 1, graphOptimizationLevel: "all" };

const first = [], keystrokes = [];
for (let round = 0; round < rounds; round++) {
  const started = performance.now();
  const model = await CharRNN.load(ort, readFileSync(flag("--model")),
    { generateBytes: readFileSync(flag("--generate-model")), sessionOptions: options });
  await model.suggest("");
  first.push(performance.now() - started);
  for (const prefix of prefixes) {
    const t = performance.now();
    await model.suggest(prefix);
    keystrokes.push(performance.now() - t);
  }
}
console.log(JSON.stringify({ first_ms: first, keystroke_ms: keystrokes, node: process.version,
  onnxruntime_node: JSON.parse(readFileSync(new URL("./node_modules/onnxruntime-node/package.json", import.meta.url))).version }));
