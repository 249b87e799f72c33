"""NameGenerator: names from charrnn.onnx alone, torch-free.

The vocabulary comes from the model's own metadata (key "vocab.json"), so the .onnx file is
all an application ships. The decoding loop is model.decode_numpy, the numpy twin of
model.decode: the same names as every other backend for the same request and seed (up to
near-ties, docs/numerics.md).

charrnn_generate.onnx (export.generate_graph) runs the whole greedy loop in one session.run;
give it to NameGenerator (`generate_model`) and greedy batches use it, sampling keeps the step
loop. The n-best search and the names' log-probabilities come from the one torch-free search
(model.nbest) over the ONNX step: `NameGenerator.nbest`, `NameGenerator.logprobs`.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core import manifest
from core.request import DEFAULT_MAX_LENGTH, Row
from core.vocab import Vocab
from model import nbest
from model.decode_numpy import decode
from runtime.greedy import OnnxGreedy
from runtime.step import OnnxStep


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
            manifest.check_same_export(self.greedy.meta, self.greedy.source, self.step.meta, self.step.source)

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
