// Greedy CharRNN names from charrnn.onnx with onnxruntime-node: no Python, no vocab.json file.
//
//   node generate.mjs --model ../../artifacts/charrnn.onnx L Ma ""   (one name per prefix and line)
//
// The same rule as the Python runtime: feed bos_id, then at step t take the prefix's character
// while t < prefix length, else the argmax of the logits (end token masked at t = 0); stop at
// eos_id or after --max-length characters.
import { readFileSync } from "node:fs";
import ort from "onnxruntime-node";

// onnxruntime-node has no getter for a model's metadata_props, so read them from the protobuf:
// ModelProto field 14 is metadata_props, a list of {key: field 1, value: field 2} strings.
function readMetadata(bytes) {
  const props = {};
  const walk = (start, end, onField) => {
    let pos = start;
    const varint = () => {
      let value = 0, shift = 1;
      for (;;) {
        const byte = bytes[pos++];
        value += (byte & 0x7f) * shift;
        if (byte < 0x80) return value;
        shift *= 128;
      }
    };
    while (pos < end) {
      const key = varint(), field = Math.floor(key / 8), wire = key % 8;
      if (wire === 0) varint();
      else if (wire === 1) pos += 8;
      else if (wire === 5) pos += 4;
      else if (wire === 2) { const length = varint(); onField(field, pos, pos + length); pos += length; }
      else throw new Error(`unsupported protobuf wire type ${wire}`);
    }
  };
  const text = (s, e) => new TextDecoder().decode(bytes.subarray(s, e));
  walk(0, bytes.length, (field, s, e) => {
    if (field !== 14) return;
    const entry = {};
    walk(s, e, (f, s2, e2) => { entry[f] = text(s2, e2); });
    props[entry[1]] = entry[2];
  });
  return props;
}

function argmax(values, offset, length) {
  let best = 0;
  for (let i = 1; i < length; i++) if (values[offset + i] > values[offset + best]) best = i;
  return best;
}

async function greedyName(session, vocab, prefix, maxLength) {
  const index = new Map(vocab.symbols.map((s, i) => [s, i]));
  const forced = [...prefix.normalize("NFC")].map((ch) => {
    if (!index.has(ch)) { // special symbols are multi-character: a character never hits one
      throw new Error(`character not in the vocabulary: ${JSON.stringify(ch)}`);
    }
    return index.get(ch);
  });
  const [layers, size] = [vocab.num_layers, vocab.hidden_size];
  let hidden = new ort.Tensor("float32", new Float32Array(layers * size), [layers, 1, size]);
  let token = vocab.bos_id;
  const ids = [];
  for (let t = 0; t < maxLength; t++) {
    const char = new ort.Tensor("int64", BigInt64Array.from([BigInt(token)]), [1]);
    const out = await session.run({ char, hidden });
    const logits = out.logits.data;
    if (t === 0) logits[vocab.eos_id] = -Infinity; // a name has at least one character
    token = t < forced.length ? forced[t] : argmax(logits, 0, logits.length);
    if (token === vocab.eos_id) break;
    ids.push(token);
    hidden = out.hidden_out;
  }
  return ids.map((i) => vocab.symbols[i]).join("");
}

async function main(argv) {
  let model = "artifacts/charrnn.onnx", maxLength = 24;
  const prefixes = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--model") model = argv[++i];
    else if (argv[i] === "--max-length") maxLength = Number(argv[++i]);
    else prefixes.push(argv[i]);
  }
  const bytes = readFileSync(model);
  const vocab = JSON.parse(readMetadata(bytes)["vocab.json"] ?? "null");
  if (!vocab) throw new Error(`${model}: no "vocab.json" in the model metadata`);
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ["cpu"], intraOpNumThreads: 1, graphOptimizationLevel: "all",
  });
  for (const prefix of prefixes.length ? prefixes : [""]) {
    console.log(await greedyName(session, vocab, prefix, maxLength));
  }
}

main(process.argv.slice(2)).catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
