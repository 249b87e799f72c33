"""Torch-free name generation with ONNX Runtime: needs only numpy, onnxruntime and charrnn.onnx.

The vocabulary comes from the model's own metadata (key "vocab.json"), so the .onnx file is
all an application ships. The decoding loop mirrors model.decode (which must stay on a torch
device for the server): same rows, same greedy rule, same counter-based sampling noise, so a
seeded request gives the same names on every backend.

CLI: python -m export.runtime --model artifacts/charrnn.onnx --prefix L -n 5
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from data.vocab import Vocab, VocabError
from export import manifest
from export.errors import ArtifactError
from model.noise import to_unit_interval, uniform_bits
from model.request import DEFAULT_MAX_LENGTH, Row, make_rows

INPUTS = ("char", "hidden")
OUTPUTS = ("logits", "hidden_out")


def session_options(threads: int = 1) -> ort.SessionOptions:
    """A step is a few 1xH by HxV matrix products: thread hand-offs cost more than they save,
    so run single-threaded and sequential; full graph optimisation fuses the small ops once at
    load time."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


class OnnxStep:
    """charrnn.onnx as a step callable `(char [B] int64, hidden [L, B, H] float32) -> (logits, hidden_out)`."""

    def __init__(self, session: ort.InferenceSession, source: str):
        self.session = session
        self.source = source
        names_in = tuple(i.name for i in session.get_inputs())
        names_out = tuple(o.name for o in session.get_outputs())
        if names_in != INPUTS or names_out != OUTPUTS:
            raise ArtifactError(f"{source}: expected inputs {INPUTS} and outputs {OUTPUTS}, got {names_in} and {names_out}")
        text = session.get_modelmeta().custom_metadata_map.get(manifest.VOCAB_KEY)
        if not text:
            raise ArtifactError(f"{source}: no {manifest.VOCAB_KEY!r} in the model metadata")
        try:
            self.vocab, self.meta = manifest.parse(text, source)
        except VocabError as exc:
            raise ArtifactError(str(exc)) from None
        self.hidden_shape = (self.meta["num_layers"], self.meta["hidden_size"])

    @classmethod
    def from_path(cls, path: str | Path, threads: int = 1) -> "OnnxStep":
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: ONNX model not found")
        return cls.from_bytes(path.read_bytes(), str(path), threads)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<onnx>", threads: int = 1) -> "OnnxStep":
        try:
            session = ort.InferenceSession(data, session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
            raise ArtifactError(f"{source}: not a loadable ONNX model (truncated or corrupted?): "
                                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
        return cls(session, source)

    def __call__(self, char: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, hidden_out = self.session.run(None, {"char": np.asarray(char, dtype=np.int64),
                                                     "hidden": np.asarray(hidden, dtype=np.float32)})
        return logits, hidden_out


def choose(logits: np.ndarray, step: int, temperature: np.ndarray, top_k: np.ndarray, seeds: np.ndarray,
           sampling: bool) -> np.ndarray:
    """numpy twin of model.decode.choose."""
    greedy = logits.argmax(axis=1)
    if not sampling:
        return greedy
    vocab = logits.shape[1]
    scaled = logits / np.maximum(temperature, 1e-6)[:, None]
    k = np.where(top_k > 0, np.minimum(top_k, vocab), vocab)
    kth = -np.sort(-scaled, axis=1)[np.arange(len(k)), k - 1][:, None]
    scaled = np.where(scaled < kth, -np.inf, scaled)
    u = to_unit_interval(uniform_bits(seeds[:, None], step, np.arange(vocab, dtype=np.int64)[None, :]).astype(np.float32))
    sampled = (scaled - np.log(-np.log(u))).argmax(axis=1)
    return np.where(temperature > 0, sampled, greedy)


def decode(step, rows: Sequence[Row], *, bos_id: int, eos_id: int, hidden_shape: tuple[int, int]) -> list[list[int]]:
    """numpy twin of model.decode.decode (fresh names only): ids per row, end token excluded."""
    batch = len(rows)
    if batch == 0:
        return []
    longest_prefix = max(1, max(len(r.prefix) for r in rows))
    prefix = np.full((batch, longest_prefix), eos_id, dtype=np.int64)
    for i, r in enumerate(rows):
        prefix[i, : len(r.prefix)] = r.prefix
    prefix_len = np.array([len(r.prefix) for r in rows])
    max_len = np.array([r.max_length for r in rows])
    temperature = np.array([r.temperature for r in rows], dtype=np.float32)
    top_k = np.array([r.top_k for r in rows])
    seeds = np.array([r.seed for r in rows], dtype=np.int64)
    sampling = bool((temperature > 0).any())

    token = np.full(batch, bos_id, dtype=np.int64)
    hidden = np.zeros((hidden_shape[0], batch, hidden_shape[1]), dtype=np.float32)
    steps = int(max_len.max())
    out = np.full((batch, steps), eos_id, dtype=np.int64)
    done = np.zeros(batch, dtype=bool)
    for t in range(steps):
        logits, hidden = step(token, hidden)
        if t == 0:  # a name has at least one character
            logits = logits.copy()
            logits[:, eos_id] = -np.inf
        chosen = choose(logits, t, temperature, top_k, seeds, sampling)
        forced = prefix[:, t] if t < longest_prefix else chosen
        token = np.where(t < prefix_len, forced, chosen)
        token = np.where(done, eos_id, token)
        out[:, t] = token
        done |= (token == eos_id) | (t + 1 >= max_len)
        if done.all():
            break
    result = []
    for ids, r in zip(out.tolist(), rows):
        ids = ids[: ids.index(eos_id)] if eos_id in ids else ids
        result.append(ids[: r.max_length])
    return result


class NameGenerator:
    """Generate names from charrnn.onnx: `NameGenerator("charrnn.onnx").generate("L", num=3)`."""

    def __init__(self, model_path: str | Path, threads: int = 1):
        self.step = OnnxStep.from_path(model_path, threads)
        self.vocab: Vocab = self.step.vocab

    def generate_rows(self, rows: Sequence[Row]) -> list[str]:
        ids = decode(self.step, rows, bos_id=self.vocab.bos_id, eos_id=self.vocab.eos_id, hidden_shape=self.step.hidden_shape)
        return [self.vocab.decode(i) for i in ids]

    def generate(self, prefixes: str | Sequence[str] = "", *, num: int = 1, max_length: int = DEFAULT_MAX_LENGTH,
                 temperature: float = 0.0, top_k: int = 0, seed: int | None = None) -> list[str]:
        """`num` names for each prefix, all decoded as one batch."""
        if isinstance(prefixes, str):
            prefixes = [prefixes]
        rows = [row for p in prefixes for row in make_rows(self.vocab, p, num=num, max_length=max_length,
                                                           temperature=temperature, top_k=top_k, seed=seed)]
        return self.generate_rows(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Generate names with ONNX Runtime (no PyTorch needed).")
    p.add_argument("--model", default="artifacts/charrnn.onnx")
    p.add_argument("--prefix", action="append", default=None, help="start of the name; repeat for several")
    p.add_argument("-n", "--num", type=int, default=1, help="names per prefix")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    try:
        gen = NameGenerator(args.model)
        names = gen.generate(args.prefix or [""], num=args.num, max_length=args.max_length,
                             temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    except (ArtifactError, VocabError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print("\n".join(names))


if __name__ == "__main__":
    main()
