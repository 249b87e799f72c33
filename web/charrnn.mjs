// CharRNN names from charrnn.onnx with any onnxruntime (onnxruntime-web in the page,
// onnxruntime-node in export/node): one decoding module for both, the JavaScript twin of
// the Python runtime (runtime/, numpy). It takes the `ort` module as an argument and imports nothing else,
// so the same file runs in a browser, a Web Worker and Node.js.
//
//   const model = await CharRNN.load(ort, stepBytes, { generateBytes });
//   await model.generate("Ma", { num: 3, temperature: 0.8, topK: 5, seed: 7 });
//
// Same rules as the Python runtime, so the same inputs give the same names: feed bos_id, then at
// step t take the prefix's character while t < prefix length, else choose from the logits (end
// token masked at t = 0); stop at eos_id or after maxLength characters. Sampling is a Gumbel-max
// draw with the counter-based noise of core/noise.py, computed in float32 like numpy.

export const DEFAULT_MAX_LENGTH = 24; // core.request.DEFAULT_MAX_LENGTH
export const MAX_SEED = 2 ** 32 - 1; // core.noise.MAX_SEED
const VOCAB_KEY = "vocab.json"; // core.manifest.VOCAB_KEY
const SEAL_KEY = "charrnn.sha256"; // core.integrity.SEAL_KEY
const STEP_IO = [["char", "hidden"], ["logits", "hidden_out"]]; // core.contract STEP_INPUTS/STEP_OUTPUTS (tests/test_contract.py)
const GRAPH_IO = [["prefix", "prefix_length", "max_length"], ["ids", "length", "logprob"]]; // core.contract GENERATE_INPUTS/GENERATE_OUTPUTS

/** Bad input (a character outside the vocabulary, a value out of range) or a bad model file. */
export class CharRNNError extends Error {
  constructor(message, details = {}) {
    super(message);
    this.name = "CharRNNError";
    Object.assign(this, details);
  }
}

// ---------------------------------------------------------------- the ONNX file's metadata

/** metadata_props of an ONNX file's bytes, as {key: value}. Neither onnxruntime-web nor
 * onnxruntime-node exposes them, so read the protobuf: ModelProto field 14 is metadata_props, a
 * list of {key: field 1, value: field 2} strings (a repeated key: the last one wins). */
export function readMetadata(bytes) {
  const props = {};
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const walk = (start, end, onField) => {
    let pos = start;
    const varint = () => {
      let value = 0, shift = 1;
      for (;;) {
        if (pos >= end) throw new CharRNNError("truncated protobuf (not an ONNX file?)");
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
      else if (wire === 2) {
        const length = varint();
        if (pos + length > end) throw new CharRNNError("truncated protobuf (not an ONNX file?)");
        onField(field, pos, pos + length);
        pos += length;
      } else throw new CharRNNError(`unsupported protobuf wire type ${wire} (not an ONNX file?)`);
    }
  };
  walk(0, bytes.length, (field, s, e) => {
    if (field !== 14) return;
    const entry = {};
    walk(s, e, (f, s2, e2) => { entry[f] = decoder.decode(bytes.subarray(s2, e2)); });
    props[entry[1]] = entry[2];
  });
  return props;
}

/** The sealed SHA-256 (core.integrity.check_onnx): "ok", or "unchecked" where no Web Crypto
 * digest exists (a page served over plain http from another host than localhost); a mismatch
 * throws. The seal is the file's last metadata entry and covers every byte before it. */
async function checkSeal(bytes, metadata, source) {
  const sealed = metadata[SEAL_KEY];
  if (sealed === undefined) {
    throw new CharRNNError(`${source}: no integrity checksum (${JSON.stringify(SEAL_KEY)} metadata): ` +
      "written by an older export or altered; re-export it (make export)");
  }
  const encoder = new TextEncoder();
  const entry = [0x0a, SEAL_KEY.length, ...encoder.encode(SEAL_KEY), 0x12, sealed.length, ...encoder.encode(sealed)];
  const trailer = [0x72, entry.length, ...entry];
  const body = bytes.length - trailer.length;
  if (sealed.length !== 64 || body < 0 || trailer.some((b, i) => bytes[body + i] !== b)) {
    throw new CharRNNError(`${source}: the integrity checksum is not the file's last entry: the file ` +
      "was altered or re-saved; re-export it (make export)");
  }
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return "unchecked";
  const digest = new Uint8Array(await subtle.digest("SHA-256", bytes.subarray(0, body)));
  const actual = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  if (actual !== sealed) {
    throw new CharRNNError(`${source}: checksum mismatch (content sha256 ${actual.slice(0, 16)}..., ` +
      `sealed ${sealed.slice(0, 16)}...): the file is corrupted or was altered; re-export it (make export)`);
  }
  return "ok";
}

/** The vocabulary and model facts of vocab.json (core.manifest.parse), validated. */
export function parseManifest(text, source) {
  let data;
  try { data = JSON.parse(text); } catch (err) {
    throw new CharRNNError(`${source}: vocab.json is not valid JSON (${err.message})`);
  }
  const { symbols, bos_id: bos, eos_id: eos } = data ?? {};
  if (!Array.isArray(symbols) || !symbols.every((s) => typeof s === "string")) {
    throw new CharRNNError(`${source}: vocabulary 'symbols' must be a list of strings`);
  }
  if (!Number.isInteger(bos) || !Number.isInteger(eos)) {
    throw new CharRNNError(`${source}: vocabulary 'bos_id' and 'eos_id' must be integers`);
  }
  if (new Set(symbols).size !== symbols.length) throw new CharRNNError(`${source}: vocabulary symbols are not unique`);
  for (const special of [bos, eos]) {
    if (!(special >= 0 && special < symbols.length) || [...symbols[special]].length === 1) {
      throw new CharRNNError(`${source}: special token id ${special} must name a multi-character symbol`);
    }
  }
  if (symbols.some((s, i) => i !== bos && i !== eos && [...s].length !== 1)) {
    throw new CharRNNError(`${source}: every non-special symbol must be a single character`);
  }
  for (const key of ["hidden_size", "num_layers"]) {
    if (!Number.isInteger(data[key]) || data[key] < 1) {
      throw new CharRNNError(`${source}: vocab.json field '${key}' must be a positive integer`);
    }
  }
  return data;
}

// ---------------------------------------------------------------- counter-based noise (core/noise.py)

/** The 32-bit finaliser of core.noise.mix32 (Math.imul is the product modulo 2**32). */
export function mix32(x) {
  x >>>= 0;
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x5bd1e995) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** Seed of the index-th name of a request seeded with `seed` (core.noise.row_seed). */
export function rowSeed(seed, index) {
  return mix32((seed ^ mix32(Math.imul(index, 0x9e3779b1) + 0x632be5ab)) >>> 0);
}

/** 24 random bits for (hashed row seed, step, symbol) (core.noise.seeded_bits). */
export function seededBits(seedHash, step, symbol) {
  return mix32((seedHash ^ mix32(symbol + step * 65536 + 1)) >>> 0) >>> 8;
}

const f32 = Math.fround;
const TEMPERATURE_FLOOR = f32(1e-6); // the Choosers' clamp of the divisor

/** log(-log(u)) per symbol for one row and step, in float32 as numpy computes it
 * (model.decode_numpy.Chooser._noise). */
function gumbelNoise(seedHash, step, vocabSize) {
  const noise = new Float32Array(vocabSize);
  for (let s = 0; s < vocabSize; s++) {
    const u = f32(f32(seededBits(seedHash, step, s) + 0.5) * (1 / 16777216));
    noise[s] = f32(Math.log(-f32(Math.log(u))));
  }
  return noise;
}

function argmax(values, offset, length) {
  let best = 0;
  for (let i = 1; i < length; i++) if (values[offset + i] > values[offset + best]) best = i;
  return best;
}

/** The next symbol of one row from its logits (model.decode_numpy.Chooser): argmax at temperature
 * 0, else the Gumbel-max sample of the temperature-scaled, top-k-restricted logits. */
function choose(logits, offset, vocabSize, row, seedHash, step) {
  if (!(row.temperature > 0)) return argmax(logits, offset, vocabSize);
  const divisor = Math.max(f32(row.temperature), TEMPERATURE_FLOOR);
  const scaled = new Float32Array(vocabSize);
  for (let s = 0; s < vocabSize; s++) scaled[s] = logits[offset + s] / divisor;
  if (row.topK > 0 && row.topK < vocabSize) { // k >= vocab (or 0) keeps every symbol
    const kth = Float32Array.from(scaled).sort()[vocabSize - row.topK];
    for (let s = 0; s < vocabSize; s++) if (scaled[s] < kth) scaled[s] = -Infinity;
  }
  const noise = gumbelNoise(seedHash, step, vocabSize);
  for (let s = 0; s < vocabSize; s++) scaled[s] -= noise[s]; // Float32Array: rounds as numpy does
  return argmax(scaled, 0, vocabSize);
}

function softmax(logits, offset, length) {
  let top = -Infinity;
  for (let i = 0; i < length; i++) top = Math.max(top, logits[offset + i]);
  const out = new Float64Array(length);
  let total = 0;
  for (let i = 0; i < length; i++) total += out[i] = Math.exp(logits[offset + i] - top);
  for (let i = 0; i < length; i++) out[i] /= total;
  return out;
}

// ---------------------------------------------------------------- the model

function checkIO(session, [inputs, outputs], source) {
  const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  if (!same(session.inputNames, inputs) || !same(session.outputNames, outputs)) {
    throw new CharRNNError(`${source}: expected inputs ${inputs} and outputs ${outputs}, got ` +
      `${session.inputNames} and ${session.outputNames}`);
  }
}

async function openModel(ort, bytes, source, options) {
  bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const metadata = readMetadata(bytes);
  if (!metadata[VOCAB_KEY]) throw new CharRNNError(`${source}: no "${VOCAB_KEY}" in the model metadata`);
  const integrity = await checkSeal(bytes, metadata, source);
  let session;
  try {
    session = await ort.InferenceSession.create(bytes, options);
  } catch (err) {
    throw new CharRNNError(`${source}: not a loadable ONNX model (truncated or corrupted?): ${err.message}`);
  }
  return { session, manifest: parseManifest(metadata[VOCAB_KEY], source), integrity };
}

export class CharRNN {
  /** Load charrnn.onnx (bytes) and, optionally, charrnn_generate.onnx of the same export, which
   * then decodes greedy requests in one session.run. `sessionOptions` go to onnxruntime. */
  static async load(ort, stepBytes, { generateBytes = null, source = "charrnn.onnx",
    generateSource = "charrnn_generate.onnx", sessionOptions = {} } = {}) {
    const step = await openModel(ort, stepBytes, source, sessionOptions);
    checkIO(step.session, STEP_IO, source);
    let graph = null;
    if (generateBytes) {
      graph = await openModel(ort, generateBytes, generateSource, sessionOptions);
      checkIO(graph.session, GRAPH_IO, generateSource);
      const a = step.manifest, b = graph.manifest;
      if (a.fingerprint !== b.fingerprint || JSON.stringify(a.symbols) !== JSON.stringify(b.symbols)) {
        throw new CharRNNError(`${generateSource}: not from the same export as ${source} (vocab.json ` +
          `fingerprint ${b.fingerprint} against ${a.fingerprint})`);
      }
    }
    return new CharRNN(ort, step, graph);
  }

  constructor(ort, step, graph) {
    this.ort = ort;
    this.session = step.session;
    this.graph = graph?.session ?? null;
    this.manifest = step.manifest;
    // "ok" when every loaded file's sealed checksum was verified, "unchecked" without Web Crypto
    this.integrity = [step.integrity, graph?.integrity ?? "ok"].includes("unchecked") ? "unchecked" : "ok";
    const m = this.manifest;
    this.symbols = m.symbols;
    this.bosId = m.bos_id;
    this.eosId = m.eos_id;
    this.fingerprint = m.fingerprint;
    this.vocabSize = m.symbols.length;
    this.hiddenShape = [m.num_layers, m.hidden_size];
    this.index = new Map(m.symbols.map((s, i) => [s, i]));
    this.characters = m.symbols.filter((_, i) => i !== m.bos_id && i !== m.eos_id);
  }

  /** The characters of `text` (NFC) that the vocabulary lacks, each once, in code point order. */
  unknownCharacters(text) {
    const missing = new Set([...text.normalize("NFC")].filter((ch) => !this.index.has(ch)));
    return [...missing].sort((a, b) => a.codePointAt(0) - b.codePointAt(0));
  }

  /** Symbol ids of `text` after NFC (core.request.make_rows); an unknown character is an error
   * naming it, as core.vocab.Vocab.encode words it, with the characters in `error.missing`. */
  encode(text) {
    const missing = this.unknownCharacters(text);
    if (missing.length) {
      const shown = missing.map((ch) => `${JSON.stringify(ch)} (U+${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")})`);
      throw new CharRNNError(`characters not in the vocabulary: ${shown.join(", ")}`, { missing });
    }
    // special symbols are multi-character: a character never hits one
    return [...text.normalize("NFC")].map((ch) => this.index.get(ch));
  }

  /** Text of ids up to the first end token (core.vocab.Vocab.decode). */
  decodeIds(ids) {
    let out = "";
    for (const i of ids) {
      if (i === this.eosId) break;
      if (i !== this.bosId) out += this.symbols[i];
    }
    return out;
  }

  /** `num` rows for one prefix (core.request.make_rows): name i gets seed rowSeed(seed, i). */
  makeRows(prefix = "", { num = 1, maxLength = DEFAULT_MAX_LENGTH, temperature = 0, topK = 0, seed = null } = {}) {
    const ids = this.encode(prefix);
    if (!Number.isInteger(num) || num < 1) throw new CharRNNError(`num must be a positive integer, got ${num}`);
    if (!Number.isInteger(maxLength) || maxLength < Math.max(1, ids.length)) {
      throw new CharRNNError(`maxLength ${maxLength} is shorter than the prefix (${ids.length}) or < 1`);
    }
    if (!(temperature >= 0) || !Number.isFinite(temperature)) {
      throw new CharRNNError(`temperature must be a finite number >= 0, got ${temperature}`);
    }
    if (!Number.isInteger(topK) || topK < 0) throw new CharRNNError(`topK must be an integer >= 0, got ${topK}`);
    if (seed === null || seed === undefined) seed = randomSeed();
    if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
      throw new CharRNNError(`seed must be an integer in [0, ${MAX_SEED}], got ${seed}`);
    }
    return Array.from({ length: num }, (_, i) => ({ prefix: ids, maxLength, temperature, topK, seed: rowSeed(seed, i) }));
  }

  /** `num` names for `prefix`: greedy (temperature 0: the one-graph model when loaded) or seeded
   * samples, the same names as runtime.generator.NameGenerator.generate for the same arguments. */
  async generate(prefix = "", options = {}) {
    const rows = this.makeRows(prefix, options);
    const ids = this.graph && rows.every((r) => r.temperature === 0) ? await this.decodeGraph(rows) : await this.decode(rows);
    return ids.map((row) => this.decodeIds(row));
  }

  async runStep(tokens, hidden) {
    const { ort } = this;
    const char = new ort.Tensor("int64", BigInt64Array.from(tokens, (t) => BigInt(t)), [tokens.length]);
    const out = await this.session.run({ char, hidden });
    return [out.logits.data, out.hidden_out];
  }

  zeroHidden(batch) {
    const [layers, size] = this.hiddenShape;
    return new this.ort.Tensor("float32", new Float32Array(layers * batch * size), [layers, batch, size]);
  }

  /** The step loop over a batch of rows (model.decode_numpy.decode): ids per row, end token excluded. */
  async decode(rows) {
    const batch = rows.length;
    if (!batch) return [];
    const steps = Math.max(...rows.map((r) => r.maxLength));
    const V = this.vocabSize;
    const seedHash = rows.map((r) => mix32(r.seed));
    const out = rows.map(() => []);
    const done = new Array(batch).fill(false);
    let tokens = new Array(batch).fill(this.bosId);
    let hidden = this.zeroHidden(batch);
    for (let t = 0; t < steps; t++) {
      const [logits, next] = await this.runStep(tokens, hidden);
      hidden = next;
      if (t === 0) for (let b = 0; b < batch; b++) logits[b * V + this.eosId] = -Infinity; // a name has >= 1 character
      for (let b = 0; b < batch; b++) {
        const r = rows[b];
        let token;
        if (done[b]) token = this.eosId;
        else if (t < r.prefix.length) token = r.prefix[t];
        else token = choose(logits, b * V, V, r, seedHash[b], t);
        tokens[b] = token;
        if (!done[b] && token !== this.eosId) out[b].push(token);
        if (token === this.eosId || t + 1 >= r.maxLength) done[b] = true;
      }
      if (done.every(Boolean)) break;
    }
    return out;
  }

  /** Greedy rows through charrnn_generate.onnx in one run (runtime.greedy.OnnxGreedy.decode). */
  async decodeGraph(rows) {
    if (!rows.length) return [];
    const { ort } = this;
    const width = Math.max(1, ...rows.map((r) => r.prefix.length));
    const prefix = new BigInt64Array(rows.length * width).fill(BigInt(this.eosId));
    rows.forEach((r, i) => r.prefix.forEach((id, j) => { prefix[i * width + j] = BigInt(id); }));
    const cap = Math.max(...rows.map((r) => r.maxLength));
    const out = await this.graph.run({
      prefix: new ort.Tensor("int64", prefix, [rows.length, width]),
      prefix_length: new ort.Tensor("int64", BigInt64Array.from(rows, (r) => BigInt(r.prefix.length)), [rows.length]),
      max_length: new ort.Tensor("int64", BigInt64Array.from([BigInt(cap)]), []),
    });
    const ids = out.ids.data, length = out.length.data, stride = out.ids.dims[1];
    return rows.map((r, i) => {
      const n = Math.min(Number(length[i]), r.maxLength);
      return Array.from(ids.subarray(i * stride, i * stride + n), Number);
    });
  }

  /** The step's logits after bos and `ids`. Typing extends or trims the previous text, so the
   * states along the last call's ids are kept: one more character costs one step, not all. */
  async logitsAfter(ids) {
    const last = this.typed ?? { ids: [], states: [] };
    let same = 0;
    while (same < ids.length && same < last.ids.length && ids[same] === last.ids[same]) same++;
    const states = last.states.slice(0, same + 1); // states[k]: after bos and ids[0..k)
    if (!states.length) {
      const [logits, hidden] = await this.runStep([this.bosId], this.zeroHidden(1));
      states.push({ logits, hidden });
    }
    for (let k = states.length - 1; k < ids.length; k++) {
      const [logits, hidden] = await this.runStep([ids[k]], states[k].hidden);
      states.push({ logits, hidden });
    }
    this.typed = { ids, states };
    return states[ids.length].logits;
  }

  /** Probability of each next symbol after `prefix`, most likely first: [{char, p}], char "" for
   * the end of the name (impossible for the empty prefix: a name has at least one character). */
  async nextProbabilities(prefix = "") {
    const ids = this.encode(prefix);
    const logits = Float32Array.from(await this.logitsAfter(ids));
    if (!ids.length) logits[this.eosId] = -Infinity;
    const probs = softmax(logits, 0, this.vocabSize);
    return [...probs].map((p, i) => ({ char: i === this.eosId ? "" : this.symbols[i], p }))
      .filter((_, i) => i !== this.bosId || i === this.eosId)
      .sort((a, b) => b.p - a.p);
  }

  /** What a type-ahead box shows for `prefix`: the next-symbol probabilities (`next`, the `top`
   * most likely), the greedy name (`greedy`) and `completions`: the `count` most probable whole
   * names that start with it (`nbest`), best first, with `logprob` and `p` = exp(logprob). */
  async suggest(prefix = "", { top = 8, count = 5, maxLength = DEFAULT_MAX_LENGTH } = {}) {
    // twin of runtime.generator.NameGenerator.suggest: next symbols, the greedy name, and the
    // `count` most probable whole names (the exact n-best search) with their probabilities
    const next = await this.nextProbabilities(prefix);
    const text = prefix.normalize("NFC");
    const length = Math.max(maxLength, [...text].length, 1);
    const row = this.makeRows(text, { maxLength: length })[0];
    const ids = this.graph ? await this.decodeGraph([row]) : await this.decode([row]);
    const greedy = this.decodeIds(ids[0]);
    const found = await this.nbest(text, { num: count, maxLength: length });
    const completions = found.names.map((name, i) => ({ name, logprob: found.logprobs[i], p: Math.exp(found.logprobs[i]) }));
    return { prefix: text, next: next.slice(0, top), greedy, completions };
  }

  /** The `num` most probable distinct complete names starting with `prefix`, best first, with
   * their natural-log probabilities: the exact search of model.nbest (issue 16), its JavaScript
   * twin. `complete` is false when `maxExpansions` stopped it (the names are then the proven ones). */
  async nbest(prefix = "", { num = 5, maxLength = DEFAULT_MAX_LENGTH, maxExpansions = DEFAULT_MAX_EXPANSIONS,
    width = DEFAULT_WIDTH } = {}) {
    const found = await searchNBest(this, this.encode(prefix), num, maxLength, maxExpansions, width);
    return { ...found, names: found.ids.map((ids) => this.decodeIds(ids)) };
  }
}

// ---------------------------------------------------------------- n-best (issue 16)

export const DEFAULT_MAX_EXPANSIONS = 10000; // model.nbest.DEFAULT_MAX_EXPANSIONS
export const DEFAULT_WIDTH = 32; // model.nbest.DEFAULT_WIDTH

/** float64 log-softmax of one row of float32 logits; `first` excludes the end token (a name
 * has at least one character), as model.nbest.log_softmax. */
function logSoftmax(logits, offset, length, first, eosId) {
  const x = new Float64Array(length);
  for (let i = 0; i < length; i++) x[i] = logits[offset + i];
  if (first) x[eosId] = -Infinity;
  let top = -Infinity;
  for (let i = 0; i < length; i++) if (x[i] > top) top = x[i];
  let total = 0;
  for (let i = 0; i < length; i++) total += Math.exp(x[i] - top);
  const lse = top + Math.log(total);
  for (let i = 0; i < length; i++) x[i] -= lse;
  return x;
}

/** The frontier's order, as Python compares the tuples (-logp, ids, kind): log-probability
 * descending, then ids ascending lexicographically (a proper prefix first), then a complete
 * name (kind 0) before a prefix to expand (kind 1). */
function before(a, b) {
  if (a.neg !== b.neg) return a.neg < b.neg;
  const n = Math.min(a.ids.length, b.ids.length);
  for (let i = 0; i < n; i++) if (a.ids[i] !== b.ids[i]) return a.ids[i] < b.ids[i];
  if (a.ids.length !== b.ids.length) return a.ids.length < b.ids.length;
  return a.kind < b.kind;
}

/** A binary heap under `less`. */
class Heap {
  constructor(less) { this.less = less; this.items = []; }
  get size() { return this.items.length; }
  peek() { return this.items[0]; }
  push(item) {
    const a = this.items;
    a.push(item);
    for (let i = a.length - 1; i > 0;) {
      const up = (i - 1) >> 1;
      if (!this.less(a[i], a[up])) break;
      [a[i], a[up]] = [a[up], a[i]];
      i = up;
    }
  }
  pop() {
    const a = this.items, top = a[0], last = a.pop();
    if (a.length) {
      a[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l], a[m])) m = l;
        if (r < a.length && this.less(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

/** The exact best-first search of model.nbest (its docstring defines the order, the
 * log-probabilities and the bound): the `num` most probable distinct complete names starting
 * with the prefix ids, best first, expanding up to `width` frontier prefixes per step call.
 * Children enter the frontier lazily, sorted once per expanded prefix. */
async function searchNBest(model, prefix, num, maxLength, maxExpansions, width) {
  const { bosId, eosId, vocabSize: V } = model;
  const [layers, size] = model.hiddenShape;
  if (!(num >= 1) || !(width >= 1) || !(maxExpansions >= 0)) throw new CharRNNError("num and width must be >= 1 and maxExpansions >= 0");
  if (maxLength < Math.max(1, prefix.length)) {
    throw new CharRNNError(`maxLength ${maxLength} is shorter than the prefix (${prefix.length}) or < 1`);
  }
  // states are one row's hidden state, [L * H] (layer-major); a step call stacks them as [L, B, H]
  const step = async (tokens, states) => {
    const B = tokens.length, hidden = new Float32Array(layers * B * size);
    states.forEach((st, b) => { for (let l = 0; l < layers; l++) hidden.set(st.subarray(l * size, (l + 1) * size), (l * B + b) * size); });
    const [logits, out] = await model.runStep(tokens, new model.ort.Tensor("float32", hidden, [layers, B, size]));
    const h = out.data;
    const next = states.map((_, b) => {
      const row = new Float32Array(layers * size);
      for (let l = 0; l < layers; l++) row.set(h.subarray((l * B + b) * size, (l * B + b + 1) * size), l * size);
      return row;
    });
    return [logits, next];
  };
  let state = new Float32Array(layers * size), token = bosId, logp = 0;
  let calls = 0;
  for (let t = 0; t < prefix.length; t++) { // feed the prefix, one symbol per step call
    const [logits, states] = await step([token], [state]);
    logp += logSoftmax(logits, 0, V, t === 0, eosId)[prefix[t]];
    state = states[0];
    token = prefix[t];
    calls++;
  }
  const frontier = new Heap(before);
  const known = new Heap((a, b) => a < b); // the best `num` complete log-probabilities pushed (min first)
  const results = [];
  let expansions = 0;
  frontier.push({ neg: -logp, ids: prefix, kind: 1, link: null });
  const push = (sib, i) => {
    const lp = sib.logps[i], v = sib.symbols[i];
    if (v === eosId) {
      frontier.push({ neg: -lp, ids: sib.parent, kind: 0, link: [sib, i] });
      if (known.size < num) known.push(lp);
      else if (lp > known.peek()) { known.pop(); known.push(lp); }
    } else frontier.push({ neg: -lp, ids: [...sib.parent, v], kind: 1, link: [sib, i] });
  };
  const pop = () => {
    const entry = frontier.pop();
    if (entry.link && entry.link[1] + 1 < entry.link[0].logps.length) push(entry.link[0], entry.link[1] + 1);
    return entry;
  };
  while (frontier.size && results.length < num) {
    const floor = known.size === num ? known.peek() : -Infinity;
    if (-frontier.peek().neg < floor) break; // nothing left can reach the top `num`
    if (frontier.peek().kind === 0) { // the best entry is a complete name: proven
      const entry = pop();
      results.push([entry.ids, -entry.neg]);
      continue;
    }
    if (expansions >= maxExpansions) break;
    const batch = [];
    while (frontier.size && frontier.peek().kind === 1 && -frontier.peek().neg >= floor && batch.length < width &&
           expansions + batch.length < maxExpansions) batch.push(pop());
    const [logits, states] = await step(batch.map((e) => (e.ids.length ? e.ids[e.ids.length - 1] : bosId)),
      batch.map((e) => (e.link ? e.link[0].state : state)));
    calls++;
    expansions += batch.length;
    batch.forEach((entry, row) => {
      const lp = logSoftmax(logits, row * V, V, entry.ids.length === 0, eosId);
      const children = [];
      for (let v = 0; v < V; v++) {
        const allowed = v === eosId ? entry.ids.length > 0 : v !== bosId && entry.ids.length < maxLength;
        if (allowed && lp[v] > -Infinity) children.push([v, -entry.neg + lp[v]]);
      }
      // siblings in the frontier's order: log-prob descending, then the end token, then id
      const rank = (v) => (v === eosId ? -1 : v);
      children.sort((a, b) => (b[1] - a[1]) || (rank(a[0]) - rank(b[0])));
      if (children.length) {
        push({ parent: entry.ids, symbols: children.map((c) => c[0]), logps: children.map((c) => c[1]), state: states[row] }, 0);
      }
    });
  }
  const complete = results.length === num || !frontier.size || (known.size === num && -frontier.peek().neg < known.peek());
  return { ids: results.map((r) => r[0]), logprobs: results.map((r) => r[1]), complete, expansions, stepCalls: calls };
}

/** A uniformly drawn seed in [0, 2**32): Web Crypto where there is one. */
export function randomSeed() {
  const c = globalThis.crypto;
  if (c?.getRandomValues) return c.getRandomValues(new Uint32Array(1))[0];
  return Math.floor(Math.random() * 2 ** 32);
}
