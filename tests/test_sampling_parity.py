"""Seeded sampling: the same names on every backend, alone or batched (README, "Generate"), and a
temperature and top-k that do what they say.

The backends are the eager model and the TorchScript step (both decoded by the torch loop,
model.chunked, choosing with model.choose.Chooser) and the ONNX step decoded by its numpy twin
(model.decode_numpy.Chooser). Parity alone cannot notice
a temperature ignored by both twins, so the choices are also checked against a reference computed
here from the step's logits (softmax(logits / T) over the top k, with the counter-based noise of
core.noise), and against what a temperature must do to the names (low: the greedy name; high:
many names). Variants: 1- and 2-layer tanh RNN and GRU, all tiny (tests/conftest.py).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from core.contract import ONNX_GENERATE as GENERATE_FILE
from core.noise import MAX_SEED, to_unit_interval, uniform_bits
from core.request import Row
from model import decode as torch_decode
from model import decode_numpy
from model.checkpoint import load_checkpoint
from model.generate import TorchGenerator
from runtime.generator import NameGenerator
from tests.conftest import Artifacts

VARIANTS = ["rnn-1", "rnn-2", "gru-1", "gru-2", "ens"]
every_variant = pytest.mark.parametrize("variant_artifacts", VARIANTS, indirect=True)
PREFIXES = ["", "A", "Ma", "Jo", "Z"]
SEEDS = [0, 1, 7, 123_456_789, MAX_SEED]


LOADED: dict[Path, dict] = {}  # per export folder, loaded once per session


def backends(artifacts: Artifacts) -> dict:
    """generate_rows of each backend of one export. "onnx+graph" decodes all-greedy batches with
    the one-graph model (charrnn_generate.onnx) and everything else with the ONNX step loop."""
    if artifacts.dir not in LOADED:
        LOADED[artifacts.dir] = {
            "eager": TorchGenerator.from_checkpoint(artifacts.checkpoint).generate_rows,
            "torchscript": TorchGenerator.from_torchscript(artifacts.torchscript).generate_rows,
            "onnx": NameGenerator(artifacts.onnx).generate_rows,
            "onnx+graph": NameGenerator(artifacts.onnx, generate_model=artifacts.dir / GENERATE_FILE).generate_rows,
        }
    return LOADED[artifacts.dir]


@cache
def eager_model(checkpoint: Path):
    model, vocab, _ = load_checkpoint(checkpoint)
    return model, vocab


def rows_of(vocab, specs) -> list[Row]:
    """specs: (prefix, temperature, top_k, seed, max_length)."""
    return [Row(tuple(vocab.encode(p)), max_length=m, temperature=t, top_k=k, seed=s) for p, t, k, s, m in specs]


def sampled_by_backend(artifacts: Artifacts, rows: list[Row]) -> dict[str, list[str]]:
    """Names of a batch with sampled rows ("onnx+graph" would take the "onnx" step loop)."""
    return {name: generate(rows) for name, generate in backends(artifacts).items() if name != "onnx+graph"}


# ---------------------------------------------------------------- the same names everywhere


@every_variant
@pytest.mark.parametrize("temperature", [0.3, 3.0])
def test_sampled_names_agree_across_backends(variant_artifacts, temperature):
    """One batch per temperature: every prefix, several seeds, with and without top-k, two caps."""
    artifacts = variant_artifacts
    vocab = eager_model(artifacts.checkpoint)[1]
    specs = [(p, temperature, k, s, m) for p in PREFIXES for s in SEEDS[:3] for k, m in ((0, 24), (3, 24), (5, 8))]
    got = sampled_by_backend(artifacts, rows_of(vocab, specs))
    assert got["torchscript"] == got["eager"]
    assert got["onnx"] == got["eager"]
    assert all(name.startswith(p) for name, (p, *_) in zip(got["eager"], specs))


def mixed_specs(vocab_size: int) -> list[tuple]:
    """Greedy and sampled rows side by side: small, large and unit temperatures, top-k from 1 to
    beyond the vocabulary, several prefixes and caps, extreme seeds."""
    return [
        ("", 0.0, 0, 0, 24), ("Ma", 3.0, 0, 1, 24), ("J", 0.3, 0, 2, 12), ("Lu", 0.0, 4, 3, 9),
        ("", 1.0, 0, 4, 15), ("A", 3.0, 3, 5, 24), ("Z", 0.3, 2, MAX_SEED, 24), ("", 3.0, 1, 6, 24),
        ("Jo", 0.0, 0, 0, 24), ("B", 0.3, vocab_size, 8, 24), ("", 3.0, vocab_size + 7, 9, 6),
        ("Ma", 0.0, 0, MAX_SEED, 3), ("C", 1.5, vocab_size - 1, 123_456_789, 24), ("", 0.0, 0, 11, 24),
    ]


@every_variant
def test_a_row_gets_the_same_name_alone_or_in_a_mixed_batch_on_every_backend(variant_artifacts):
    """Each row decoded alone (greedy rows alone take the argmax path, or the one-graph model
    for "onnx+graph") equals it in a batch with greedy and sampled rows, in either order."""
    artifacts = variant_artifacts
    vocab = eager_model(artifacts.checkpoint)[1]
    rows = rows_of(vocab, mixed_specs(len(vocab)))
    reference = None
    for name, generate in backends(artifacts).items():
        batched = generate(rows)
        assert [generate([r])[0] for r in rows] == batched, name
        assert generate(rows[::-1]) == batched[::-1], name
        reference = reference or batched
        assert batched == reference, name


@pytest.mark.parametrize("twin", ["torch", "numpy"])
def test_a_greedy_row_in_a_mixed_batch_takes_the_argmax_even_on_a_near_tie(twin):
    """A greedy row is the argmax, not a sample at a tiny temperature: the two differ where two
    logits nearly tie, which the trained tiny models rarely produce, so give the Chooser such
    logits directly."""
    vocab = 6
    high, low = np.float32(0.5), np.nextafter(np.float32(0.5), np.float32(0))  # one ulp apart
    logits = np.full((33, vocab), -2.0, dtype=np.float32)
    logits[:, 1], logits[:, 4] = low, high
    rows = [Row((), temperature=0.0, seed=s) for s in range(32)] + [Row((), temperature=1.0, seed=1)]
    if twin == "torch":
        choose = torch_decode.Chooser.for_rows(rows, vocab)
    else:
        choose = decode_numpy.Chooser(rows)
    for step in range(3):
        chosen = choose(torch.from_numpy(logits), step).numpy() if twin == "torch" else choose(logits, step)
        assert chosen[:32].tolist() == [4] * 32, step


# ---------------------------------------------------------------- what temperature and top-k do


def reference_margins(artifacts: Artifacts, row: Row, name: str) -> list[float]:
    """Replay `name` through the eager model, step by step, and return at each sampled step how
    far the chosen symbol's score falls short of the best one (0 when it is the best).

    The reference sampler (Gumbel-max): draw u(row seed, step, symbol) from core.noise, score
    each symbol of the top k as log softmax(logits / T) - log(-log u), choose the highest. It is
    computed in float64 from plain Python floats, not with either Chooser."""
    model, vocab = eager_model(artifacts.checkpoint)
    ids = vocab.encode(name)
    chosen = ids + ([vocab.eos_id] if len(ids) < row.max_length else [])
    margins = []
    hidden = model.init_hidden(1)
    token = vocab.bos_id
    with torch.inference_mode():
        for step, pick in enumerate(chosen):
            logits, hidden = model.step(torch.tensor([token]), hidden)
            token = pick
            if step < len(row.prefix):  # forced by the prefix
                continue
            values = [float(x) for x in logits[0].double()]
            if step == 0:
                values[vocab.eos_id] = -math.inf  # a name has at least one character
            allowed = range(len(values))
            if 0 < row.top_k < len(values):
                kth = sorted(values, reverse=True)[row.top_k - 1]
                allowed = [i for i in allowed if values[i] >= kth]
            scaled = [values[i] / row.temperature for i in allowed]
            top = max(scaled)
            log_norm = top + math.log(sum(math.exp(z - top) for z in scaled))
            score = {i: z - log_norm - math.log(-math.log(to_unit_interval(uniform_bits(row.seed, step, i))))
                     for i, z in zip(allowed, scaled)}
            best = max(score.values())
            margins.append(best - score.get(pick, -math.inf))
    return margins


@pytest.mark.parametrize("variant_artifacts", ["rnn-1", "gru-2"], indirect=True)
def test_each_sampled_choice_is_the_reference_samplers_choice(variant_artifacts):
    """Every sampled character (and the end of every name) of the torch and the numpy samplers
    is the reference's choice, up to float32 rounding: a temperature or top-k ignored by either
    sampler, or by both, picks other characters."""
    artifacts = variant_artifacts
    vocab = eager_model(artifacts.checkpoint)[1]
    specs = [(p, t, k, s, 24) for p in ("", "Ma") for t in (0.3, 3.0) for k in (0, 3) for s in SEEDS]
    rows = rows_of(vocab, specs)
    gens = backends(artifacts)
    checked = 0
    for backend in ("eager", "onnx"):
        for row, name in zip(rows, gens[backend](rows)):
            margins = reference_margins(artifacts, row, name)
            # float32 logits, scaling and noise against float64: relative rounding, small floor
            assert all(m <= 1e-4 for m in margins), (backend, row, name, margins)
            checked += len(margins)
    assert checked > 2 * len(rows)


def test_temperature_moves_names_from_the_greedy_one_to_many(tiny_artifacts):
    """Statistics over 64 seeds per prefix, on the eager and the numpy sampler: a low temperature
    gives the greedy name for most seeds, a high one almost never and nearly all names distinct,
    and the names spread more as the temperature rises."""
    artifacts = tiny_artifacts
    vocab = eager_model(artifacts.checkpoint)[1]
    gens = backends(artifacts)
    for prefix in ("", "Ma"):
        (greedy,) = gens["eager"]([Row(tuple(vocab.encode(prefix)))])
        for backend in ("eager", "onnx"):
            def sample(t, prefix=prefix, backend=backend):
                return gens[backend]([Row(tuple(vocab.encode(prefix)), temperature=t, seed=s) for s in range(64)])

            cold, warm, hot = sample(0.1), sample(1.0), sample(3.0)
            assert sum(n == greedy for n in cold) >= 48, (backend, prefix, cold)
            assert sum(n == greedy for n in hot) <= 8, (backend, prefix, hot)
            assert len(set(hot)) >= 48, (backend, prefix, hot)
            assert len(set(cold)) < len(set(warm)), (backend, prefix)
