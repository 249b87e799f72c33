// CharRNN names from charrnn.onnx with onnxruntime-node: no Python, no vocab.json file.
//
//   node generate.mjs --model ../../artifacts/charrnn.onnx L Ma ""   (one greedy name per prefix and line)
//   node generate.mjs --model M --num 3 --temperature 0.8 --top-k 5 --seed 7 Ma   (seeded samples)
//   node generate.mjs --model M --next Ma   (next-character probabilities, one "char<TAB>p" a line)
//   node generate.mjs --model M --num 5 --logprobs Ma   (the 5 most probable names; --search greedy: the greedy name 5 times)
//
// The decoding is web/charrnn.mjs, the module the browser page uses too: the same names as the
// Python runtime (runtime/) for the same model, prefix, temperature, top-k and seed.
import { readFileSync } from "node:fs";
import ort from "onnxruntime-node";
import { CharRNN, DEFAULT_MAX_LENGTH } from "../../web/charrnn.mjs";

function parseArgs(argv) {
  const args = { model: "artifacts/charrnn.onnx", generateModel: null, maxLength: DEFAULT_MAX_LENGTH, num: 1,
    temperature: 0, topK: 0, seed: null, next: false, search: null, logprobs: false, maxExpansions: undefined,
    prefixes: [] };
  const number = (flag, value, integer) => {
    const n = Number(value);
    if (value === undefined || value === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
      throw new Error(`${flag} needs ${integer ? "an integer" : "a number"}, got ${JSON.stringify(value)}`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--model") args.model = argv[++i];
    else if (a === "--generate-model") args.generateModel = argv[++i];
    else if (a === "--max-length") args.maxLength = number(a, argv[++i], true);
    else if (a === "--num" || a === "-n") args.num = number(a, argv[++i], true);
    else if (a === "--temperature") args.temperature = number(a, argv[++i], false);
    else if (a === "--top-k") args.topK = number(a, argv[++i], true);
    else if (a === "--seed") args.seed = number(a, argv[++i], true);
    else if (a === "--next") args.next = true;
    else if (a === "--search") args.search = argv[++i];
    else if (a === "--logprobs") args.logprobs = true;
    else if (a === "--max-expansions") args.maxExpansions = number(a, argv[++i], true);
    else args.prefixes.push(a);
  }
  if (![null, "greedy", "nbest"].includes(args.search)) {
    throw new Error(`--search must be greedy or nbest, got ${JSON.stringify(args.search)}`);
  }
  if (args.search === "nbest" && args.temperature > 0) {
    throw new Error("--search nbest returns the most probable names: it needs temperature 0");
  }
  return args;
}

async function main(argv) {
  const args = parseArgs(argv);
  const model = await CharRNN.load(ort, readFileSync(args.model), {
    source: args.model,
    generateBytes: args.generateModel ? readFileSync(args.generateModel) : null,
    generateSource: args.generateModel ?? undefined,
    sessionOptions: { executionProviders: ["cpu"], intraOpNumThreads: 1, graphOptimizationLevel: "all" },
  });
  for (const prefix of args.prefixes.length ? args.prefixes : [""]) {
    if (args.next) {
      for (const { char, p } of await model.nextProbabilities(prefix)) console.log(`${char}\t${p}`);
      continue;
    }
    // the same rule as Python's (model.nbest.choose_search): several names at temperature 0 are
    // the n-best list unless greedy is asked for by name
    const search = args.search ?? (args.temperature === 0 && args.num > 1 ? "nbest" : "greedy");
    if (search === "nbest") {
      const found = await model.nbest(prefix, { num: args.num, maxLength: args.maxLength, maxExpansions: args.maxExpansions });
      found.names.forEach((name, i) => console.log(args.logprobs ? `${name}\t${found.logprobs[i].toFixed(6)}` : name));
      if (!found.complete) console.error(`warning: the search bound (--max-expansions) stopped the search after ${found.names.length} proven names`);
      continue;
    }
    const names = await model.generate(prefix, { num: args.num, maxLength: args.maxLength,
      temperature: args.temperature, topK: args.topK, seed: args.seed });
    for (const name of names) console.log(name);
  }
}

main(process.argv.slice(2)).catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
