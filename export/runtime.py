"""Torch-free name generation with ONNX Runtime: needs only numpy, onnxruntime and charrnn.onnx.

The vocabulary comes from the model's own metadata (key "vocab.json"), so the .onnx file is
all an application ships. The decoding loop mirrors model.decode (which must stay on a torch
device for the server): same rows, same greedy rule, same counter-based sampling noise, so a
seeded request gives the same names on every backend.

charrnn_generate.onnx (export.generate_graph) runs the whole greedy loop in one session.run;
give it to NameGenerator (or --generate-model) and greedy batches use it, sampling keeps the
step loop.

The n-best search and the names' log-probabilities come from the one torch-free search
(model.nbest) over the ONNX step: `NameGenerator.nbest`, `NameGenerator.logprobs`.

CLI: python -m export.runtime --model artifacts/charrnn.onnx --prefix L -n 5 [--logprobs]
"""

from __future__ import annotations

import argparse
import math
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where a session is made: GENERATE_FILE and the Chooser need no ORT
    import onnxruntime as ort  # (the handler imports this module on GPU machines without it)

from core import integrity, manifest
from core.errors import ArtifactError
from core.noise import NOISE_CHUNK, mix32, seeded_bits, to_unit_interval
from core.request import DEFAULT_MAX_LENGTH, Row
from core.vocab import Vocab, VocabError
from model import nbest

INPUTS = ("char", "hidden")
OUTPUTS = ("logits", "hidden_out")
GENERATE_INPUTS = ("prefix", "prefix_length", "max_length")
GENERATE_OUTPUTS = ("ids", "length")
GENERATE_FILE = "charrnn_generate.onnx"  # its name in artifacts/ and in charrnn.mar


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Options for a tiny model on few cores.

    A step is a few [B, H] x [H, H] products: thread hand-offs cost more than they save, so one
    intra-op thread, sequential: on few cores a second thread gains nothing at batch 1 and its
    spinning fights the first for a core at large batches. The exported graphs are already plain
    ops, so the optimisation level matters little; ORT_ENABLE_ALL costs only load time. For more
    cores, run one session per core (threads=1 each) rather than threads > 1."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


class _OnnxModel:
    """A CPU session over one of our ONNX files: checks its input/output names and reads the
    vocabulary from its metadata."""

    INPUTS: tuple[str, ...] = ()
    OUTPUTS: tuple[str, ...] = ()

    def __init__(self, session: ort.InferenceSession, source: str):
        self.session = session
        self.source = source
        names_in = tuple(i.name for i in session.get_inputs())
        names_out = tuple(o.name for o in session.get_outputs())
        if names_in != self.INPUTS or names_out != self.OUTPUTS:
            raise ArtifactError(f"{source}: expected inputs {self.INPUTS} and outputs {self.OUTPUTS}, "
                                f"got {names_in} and {names_out}")
        text = _metadata(session, source).get(manifest.VOCAB_KEY)
        if not text:
            raise ArtifactError(f"{source}: no {manifest.VOCAB_KEY!r} in the model metadata")
        try:
            self.vocab, self.meta = manifest.parse(text, source)
        except VocabError as exc:
            raise ArtifactError(str(exc)) from None
        self.hidden_shape = (self.meta["num_layers"], self.meta["hidden_size"])

    @classmethod
    def from_path(cls, path: str | Path, threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: ONNX model not found")
        return cls.from_bytes(path.read_bytes(), str(path), threads)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<onnx>", threads: int = 1):
        """Load from the file's bytes; its sealed content checksum (core.integrity) must match."""
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(data, session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidProtobuf/... types
            raise ArtifactError(f"{source}: not a loadable ONNX model (truncated or corrupted?): "
                                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
        metadata = _metadata(session, source)
        if manifest.VOCAB_KEY in metadata:  # without it, __init__ names the missing vocabulary
            integrity.check_onnx(bytes(data), source, metadata)
        return cls(session, source)


def _metadata(session: ort.InferenceSession, source: str) -> dict[str, str]:
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception as exc:  # noqa: BLE001 - e.g. UnicodeDecodeError on damaged metadata
        raise ArtifactError(f"{source}: unreadable model metadata (corrupted?): {type(exc).__name__}") from None


class OnnxStep(_OnnxModel):
    """charrnn.onnx as a step callable `(char [B] int64, hidden [L, B, H] float32) -> (logits, hidden_out)`."""

    INPUTS, OUTPUTS = INPUTS, OUTPUTS

    def __call__(self, char: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, hidden_out = self.session.run(list(OUTPUTS), {"char": np.asarray(char, dtype=np.int64),
                                                        "hidden": np.asarray(hidden, dtype=np.float32)})
        return logits, hidden_out


class Chooser:
    """numpy twin of model.decode.Chooser, with the same values (core.noise): argmax for
    temperature 0, else a Gumbel-max sample of the temperature-scaled, top-k-restricted
    distribution. What is fixed for a decode is decided once and the noise is drawn NOISE_CHUNK
    steps at a time: its hash is ~30 numpy calls, each ~1 µs, against ~20 µs for a step."""

    def __init__(self, rows: Sequence[Row]):
        self.sampling = any(r.temperature > 0 for r in rows)
        if not self.sampling:
            return
        temperature = np.array([r.temperature for r in rows], dtype=np.float32)
        self.greedy_rows = None if all(r.temperature > 0 for r in rows) else temperature == 0
        self.divisor = np.maximum(temperature, 1e-6)[:, None]
        self.top_k = [r.top_k for r in rows]
        self.kth_index: tuple[np.ndarray, np.ndarray] | None = None
        self.seed_hash = mix32(np.array([r.seed for r in rows], dtype=np.int64))[:, None]
        self.noise, self.noise_from = np.empty(0, dtype=np.float32), 0

    def _start(self, vocab: int) -> None:
        self.symbols = np.arange(vocab, dtype=np.int64)[None, None, :]
        if any(0 < k < vocab for k in self.top_k):  # k >= vocab (or 0) keeps every symbol
            k = np.array([min(k, vocab) if k > 0 else vocab for k in self.top_k])
            self.kth_index = (np.arange(len(k)), k - 1)

    def _noise(self, step: int) -> np.ndarray:
        """log(-log(u)) for `step`, u the uniform draw of (row seed, step, symbol)."""
        if not self.noise_from <= step < self.noise_from + len(self.noise):
            steps = np.arange(step, step + NOISE_CHUNK, dtype=np.int64)[:, None, None]
            bits = seeded_bits(self.seed_hash[None], steps, self.symbols)
            self.noise = np.log(-np.log(to_unit_interval(bits.astype(np.float32))))
            self.noise_from = step
        return self.noise[step - self.noise_from]

    def __call__(self, logits: np.ndarray, step: int) -> np.ndarray:
        if not self.sampling:
            return logits.argmax(axis=1)
        if step == 0:
            self._start(logits.shape[1])
        scaled = logits / self.divisor
        if self.kth_index is not None:
            kth = -np.sort(-scaled, axis=1)[self.kth_index][:, None]
            scaled = np.where(scaled < kth, -np.inf, scaled)
        sampled = (scaled - self._noise(step)).argmax(axis=1)
        if self.greedy_rows is None:
            return sampled
        return np.where(self.greedy_rows, logits.argmax(axis=1), sampled)


def decode(step, rows: Sequence[Row], *, bos_id: int, eos_id: int, hidden_shape: tuple[int, int]) -> list[list[int]]:
    """numpy twin of model.decode.decode (fresh names only): ids per row, end token excluded.

    A step is small, so per-call overhead (one ONNX Runtime call, each numpy call) is most of
    its cost: what is known before the loop is decided before it, and a step runs only the calls
    it needs (greedy, no prefix left,
    nobody done: step, argmax, one write, one compare, one count)."""
    batch = len(rows)
    if batch == 0:
        return []
    longest_prefix = max(len(r.prefix) for r in rows)
    prefix = np.full((longest_prefix, batch), -1, dtype=np.int64)  # [time, batch]; -1: not forced
    for i, r in enumerate(rows):
        prefix[: len(r.prefix), i] = r.prefix
    steps = max(r.max_length for r in rows)
    shortest_cap = min(r.max_length for r in rows)
    max_len = np.array([r.max_length for r in rows])
    choose = Chooser(rows)

    token = np.full(batch, bos_id, dtype=np.int64)
    hidden = np.zeros((hidden_shape[0], batch, hidden_shape[1]), dtype=np.float32)
    out = np.empty((steps, batch), dtype=np.int64)  # [time, batch]: a step writes one row
    done = None  # which rows have ended, once any has
    for t in range(steps):
        logits, hidden = step(token, hidden)
        if t == 0:  # a name has at least one character
            logits = logits.copy()
            logits[:, eos_id] = -np.inf
        token = choose(logits, t)
        if t < longest_prefix:
            token = np.where(prefix[t] >= 0, prefix[t], token)
        if done is not None:
            token[done] = eos_id
        out[t] = token
        ended = token == eos_id  # rows done earlier emit eos_id: `ended` includes them
        if t + 1 >= shortest_cap:
            ended |= max_len <= t + 1
        count = np.count_nonzero(ended)
        if count == batch:
            break
        done = ended if count else None
    result = []
    for ids, r in zip(out[: t + 1].T.tolist(), rows):
        ids = ids[: ids.index(eos_id)] if eos_id in ids else ids
        result.append(ids[: r.max_length])
    return result


class OnnxGreedy(_OnnxModel):
    """charrnn_generate.onnx: `(prefix [B, P], prefix_length [B], max_length []) -> (ids [B, max_length],
    length [B])`, the whole greedy loop in one session.run (contract: export.generate_graph)."""

    INPUTS, OUTPUTS = GENERATE_INPUTS, GENERATE_OUTPUTS

    def __call__(self, prefix: np.ndarray, prefix_length: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        ids, length = self.session.run(GENERATE_OUTPUTS, {"prefix": np.asarray(prefix, dtype=np.int64),
                                                       "prefix_length": np.asarray(prefix_length, dtype=np.int64),
                                                       "max_length": np.array(max_length, dtype=np.int64)})
        return ids, length

    def require_export(self, fingerprint: str | None, symbols: Sequence[str], other: str) -> None:
        """Refuse a one-graph model from another export than `other` (its vocab.json fingerprint
        and symbols): the two would decode different names."""
        if self.meta.get("fingerprint") != fingerprint or list(self.vocab.symbols) != list(symbols):
            raise ArtifactError(f"{self.source}: not from the same export as {other} (vocab.json fingerprint "
                                f"{self.meta.get('fingerprint')} against {fingerprint})")

    def decode(self, rows: Sequence[Row]) -> list[list[int]]:
        """Same result as `decode(step, rows, ...)` for greedy rows: ids per row, end token excluded.
        One run with the largest cap; a row with a smaller cap is cut (greedy rows are independent).

        The whole call costs a few session.runs' worth, so the Python around it counts: prefixes
        of one length (one name, or one letter each) become the input array in one conversion."""
        if not rows:
            return []
        if any(r.temperature > 0 for r in rows):
            raise ValueError("the one-graph model decodes greedily only (temperature 0)")
        widths = [len(r.prefix) for r in rows]
        width = max(widths)
        if width and width == min(widths):
            prefix = np.array([r.prefix for r in rows], dtype=np.int64)
        else:
            prefix = np.full((len(rows), max(1, width)), self.vocab.eos_id, dtype=np.int64)
            for i, r in enumerate(rows):
                prefix[i, : len(r.prefix)] = r.prefix
        ids, length = self(prefix, widths, max(r.max_length for r in rows))
        return [row[: min(n, r.max_length)] for row, n, r in zip(ids.tolist(), length.tolist(), rows)]


class NameGenerator:
    """Generate names from charrnn.onnx: `NameGenerator("charrnn.onnx").generate("L", num=3)`.

    With `generate_model` (charrnn_generate.onnx of the same export), greedy batches run in one
    session.run each; sampled ones always use the step loop."""

    def __init__(self, model_path: str | Path, threads: int = 1, generate_model: str | Path | None = None):
        self.step = OnnxStep.from_path(model_path, threads)
        self.vocab: Vocab = self.step.vocab
        self.greedy: OnnxGreedy | None = None
        if generate_model is not None:
            self.greedy = OnnxGreedy.from_path(generate_model, threads)
            self.greedy.require_export(self.step.meta.get("fingerprint"), self.vocab.symbols, str(model_path))

    def generate_rows(self, rows: Sequence[Row]) -> list[str]:
        if self.greedy is not None and all(r.temperature == 0 for r in rows):
            ids = self.greedy.decode(rows)
        else:
            ids = decode(self.step, rows, bos_id=self.vocab.bos_id, eos_id=self.vocab.eos_id,
                         hidden_shape=self.step.hidden_shape)
        return [self.vocab.decode(i) for i in ids]

    def generate(self, prefixes: str | Sequence[str] = "", *, num: int = 1, max_length: int = DEFAULT_MAX_LENGTH,
                 temperature: float = 0.0, top_k: int = 0, seed: int | None = None,
                 search: str | None = None) -> list[str]:
        """`num` names for each prefix, all decoded as one batch; with temperature 0 and num > 1
        (or search="nbest") the `num` most probable distinct names per prefix, best first
        (fewer when fewer exist or the search's bound stops it: see `ranked`)."""
        return [name for names, _, _ in self.ranked(prefixes, num=num, max_length=max_length, temperature=temperature,
                                                    top_k=top_k, seed=seed, search=search, scores=False)
                for name in names]

    def ranked(self, prefixes: str | Sequence[str] = "", *, num: int = 1, max_length: int = DEFAULT_MAX_LENGTH,
               temperature: float = 0.0, top_k: int = 0, seed: int | None = None, search: str | None = None,
               max_expansions: int = nbest.DEFAULT_MAX_EXPANSIONS,
               scores: bool = True) -> list[tuple[list[str], list[float], bool]]:
        """Per prefix: (names, their log-probabilities (model.nbest; empty when not `scores`),
        complete). `complete` is False only when an n-best search hit `max_expansions`."""
        if isinstance(prefixes, str):
            prefixes = [prefixes]
        return nbest.ranked(self, prefixes, num=num, max_length=max_length, temperature=temperature, top_k=top_k,
                            seed=seed, search=search, max_expansions=max_expansions, scores=scores)

    def nbest(self, prefix: str = "", *, num: int = 5, max_length: int = DEFAULT_MAX_LENGTH,
              max_expansions: int = nbest.DEFAULT_MAX_EXPANSIONS) -> nbest.NBest:
        """The `num` most probable distinct names starting with `prefix` (model.nbest.search)."""
        ids = self.vocab.encode(unicodedata.normalize("NFC", prefix))
        return nbest.search(self._stepper, ids, num, max_length=max_length, bos_id=self.vocab.bos_id,
                            eos_id=self.vocab.eos_id, max_expansions=max_expansions)

    def logprobs(self, names: Sequence[str]) -> list[float]:
        """Natural-log probability of each whole name under the model (model.nbest.score)."""
        return nbest.score(self._stepper, [self.vocab.encode(n) for n in names],
                           bos_id=self.vocab.bos_id, eos_id=self.vocab.eos_id)

    @property
    def _stepper(self) -> nbest.NumpyStepper:
        return nbest.NumpyStepper(self.step, self.step.hidden_shape)


    # ---- type-ahead (twin: web/charrnn.mjs, the page and the Node.js example) ----

    def next_probabilities(self, prefix: str = "") -> list[tuple[str, float]]:
        """(symbol, probability) of each next symbol after `prefix`, most likely first; "" is the
        end of the name (impossible after the empty prefix: a name has at least one character)."""
        ids = self.vocab.encode(unicodedata.normalize("NFC", prefix))
        hidden = np.zeros((self.step.hidden_shape[0], 1, self.step.hidden_shape[1]), dtype=np.float32)
        for token in [self.vocab.bos_id, *ids]:
            logits, hidden = self.step(np.array([token], dtype=np.int64), hidden)
        logits = logits[0].astype(np.float64)
        if not ids:
            logits[self.vocab.eos_id] = -np.inf
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        eos, bos = self.vocab.eos_id, self.vocab.bos_id
        pairs = [("" if i == eos else s, float(p)) for i, (s, p) in enumerate(zip(self.vocab.symbols, probs))
                 if i == eos or i != bos]
        return sorted(pairs, key=lambda pair: -pair[1])  # stable: ties keep symbol order

    def suggest(self, prefix: str = "", *, top: int = 8, count: int = 5,
                max_length: int = DEFAULT_MAX_LENGTH) -> dict:
        """What a type-ahead box shows: `next`, the `top` most likely next symbols; `greedy`, the
        greedy name; `completions`, the `count` most probable whole names that start with the
        prefix (the exact n-best search), best first, each with its log-probability and that
        probability itself (`p`, the share of all names the model gives it)."""
        text = unicodedata.normalize("NFC", prefix)
        nxt = self.next_probabilities(text)
        length = max(max_length, len(text), 1)
        greedy = self.generate(text, max_length=length)[0]
        found = self.nbest(text, num=count, max_length=length)
        completions = [{"name": self.vocab.decode(ids), "logprob": lp, "p": math.exp(lp)}
                       for ids, lp in zip(found.ids, found.logprobs)]
        return {"prefix": text, "next": nxt[:top], "greedy": greedy, "completions": completions}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Generate names with ONNX Runtime (no PyTorch needed).")
    p.add_argument("--model", default="artifacts/charrnn.onnx")
    p.add_argument("--generate-model", default=None,
                   help="charrnn_generate.onnx: greedy names in one session.run per batch")
    p.add_argument("--prefix", action="append", default=None, help="start of the name; repeat for several")
    p.add_argument("-n", "--num", type=int, default=1, help="names per prefix")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    nbest.add_search_arguments(p)
    args = p.parse_args(argv)
    try:
        gen = NameGenerator(args.model, generate_model=args.generate_model)
        ranked = gen.ranked(args.prefix or [""], num=args.num, max_length=args.max_length, temperature=args.temperature,
                            top_k=args.top_k, seed=args.seed, search=args.search,
                            max_expansions=args.max_expansions, scores=args.logprobs)
    except (ArtifactError, VocabError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    nbest.print_ranked(ranked, args.logprobs)


if __name__ == "__main__":
    main()
