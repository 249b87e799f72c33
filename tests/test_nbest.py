"""The exact n-best search (model.nbest): brute-force enumeration agrees, log-probabilities are
the sum of the step's log-softmax along the name, ties break by ids, the bound returns a flagged
proven list, and every runtime (eager, TorchScript, ONNX Runtime, both CLIs, the engine) agrees."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.vocab import Vocab
from export import parity
from model import nbest
from model.charrnn import CharRNN, ModelConfig
from model.checkpoint import load_checkpoint
from model.ensemble import CharRNNEnsemble
from model.generate import TorchGenerator
from model.nbest_torch import TorchOps, TorchStepper
from runtime.generator import NameGenerator
from serve.engine import Engine
from serve.validation import GenerateRequest

ROOT = Path(__file__).resolve().parents[1]
TINY = Vocab(("<s>", "a", "b", "c"))


def close(got: float, want: float) -> bool:
    """Log-probabilities computed by different kernels (another batch, another path): the parity rule."""
    return parity.close(want, got)


def sequence_logprob(model: CharRNN | CharRNNEnsemble, ids: list[int], eos_id: int = 0, bos_id: int = 0) -> float:
    """log p(name) from the whole-sequence forward (not the step): the definition, independently."""
    with torch.no_grad():
        logits, _ = model(torch.tensor([[bos_id, *ids]]))
    logits = logits[0].double()
    logits[0, eos_id] = -math.inf  # a name has at least one character
    lp = F.log_softmax(logits, dim=1)
    return float(sum(lp[t, target] for t, target in enumerate([*ids, eos_id])))


def brute_force(model: CharRNN, prefix: tuple[int, ...], max_length: int, symbols: list[int]):
    """Every complete name with `prefix` and at most max_length characters, best first, ties by ids."""
    names = []
    for n in range(max(1, len(prefix)), max_length + 1):
        for rest in itertools.product(symbols, repeat=n - len(prefix)):
            ids = prefix + rest
            names.append((sequence_logprob(model, list(ids)), ids))
    names.sort(key=lambda x: (-x[0], x[1]))
    return names


@pytest.fixture(scope="module")
def small_model() -> CharRNN:
    """An untrained (random, high-entropy) GRU over 3 letters: the hardest case for a search."""
    torch.manual_seed(3)
    model = CharRNN(ModelConfig(vocab_size=len(TINY), hidden_size=8, cell="gru")).eval()
    with torch.no_grad():  # spread the logits so probabilities differ a lot
        model.head.weight.mul_(4)
    return model


OPS = {"numpy": nbest.numpy_ops, "torch": TorchOps}  # the search's array operations (model.nbest.ArrayOps)


@pytest.mark.parametrize("ops", OPS)
@pytest.mark.parametrize("prefix,num,max_length", [
    ("", 10, 4), ("", 200, 4), ("a", 7, 4), ("ab", 5, 4), ("abc", 6, 4), ("abca", 3, 4), ("c", 1, 5), ("", 1, 3),
])
def test_the_search_is_brute_force_enumeration(small_model, prefix, num, max_length, ops):
    """On numpy's operations and on torch's (a GPU machine may have PyTorch alone)."""
    ids = tuple(TINY.encode(prefix))
    want = brute_force(small_model, ids, max_length, [1, 2, 3])[:num]
    stepper = TorchStepper(small_model.step, (1, 8), ops=OPS[ops]())
    for width in (1, 3, 32):  # batching changes the work, never the answer
        got = nbest.search(stepper, ids, num, max_length=max_length, bos_id=0, eos_id=0, width=width)
        assert got.ids == [w[1] for w in want], (prefix, width)
        assert all(close(g, w[0]) for g, w in zip(got.logprobs, want))
        assert got.complete
    if len(want) < num:  # fewer names exist than were asked for: all of them
        assert len(got.ids) == len(brute_force(small_model, ids, max_length, [1, 2, 3]))


@pytest.mark.parametrize("ops", OPS)
def test_ties_break_by_ids_a_proper_prefix_first(ops):
    """Uniform logits: every name of a length has the same log-probability exactly."""
    def uniform(char, hidden):
        return np.zeros((len(char), len(TINY)), dtype=np.float32), hidden

    stepper = nbest.NumpyStepper(uniform, (1, 2))
    if ops == "torch":
        stepper = TorchStepper(lambda char, hidden: (torch.zeros(len(char), len(TINY)), hidden), (1, 2), ops=TorchOps())
    got = nbest.search(stepper, (), 13, max_length=3, bos_id=0, eos_id=0)
    assert [TINY.decode(i) for i in got.ids] == ["a", "b", "c", "aa", "ab", "ac", "ba", "bb", "bc", "ca", "cb",
                                                 "cc", "aaa"]
    # exactly equal: the same float64 sums of the same values; their value by the parity rule
    # (numpy's log and Python's may differ in the last bit)
    assert got.logprobs[0] == got.logprobs[2] and close(got.logprobs[0], math.log(1 / 3) + math.log(1 / 4))


def test_torch_operations_score_as_numpys(tiny_artifacts):
    """score() on the trained model: torch's operations (PyTorch alone) give numpy's values."""
    model, vocab, _ = load_checkpoint(tiny_artifacts.checkpoint)
    names = [vocab.encode(n) for n in ("Ana", "Maria", "J", "Lucas", "Zz")]
    kw = {"bos_id": vocab.bos_id, "eos_id": vocab.eos_id}
    got = nbest.score(TorchStepper(model.step, (model.num_layers, model.hidden_size), ops=TorchOps()), names, **kw)
    want = nbest.score(TorchStepper(model.step, (model.num_layers, model.hidden_size), ops=nbest.numpy_ops()), names, **kw)
    assert all(close(a, b) for a, b in zip(got, want)) and len(got) == len(names)
    for ids, lp in zip(names, got):
        assert close(lp, sequence_logprob(model, ids, vocab.eos_id, vocab.bos_id))


def test_the_bound_returns_a_flagged_proven_prefix_of_the_answer(small_model):
    stepper = TorchStepper(small_model.step, (1, 8))
    full = nbest.search(stepper, (), 40, max_length=6, bos_id=0, eos_id=0)
    assert full.complete and len(full.ids) == 40
    for bound in (0, 1, 5, 20, full.expansions - 1):
        cut = nbest.search(stepper, (), 40, max_length=6, bos_id=0, eos_id=0, max_expansions=bound, width=4)
        assert not cut.complete and cut.expansions <= bound
        assert cut.ids == full.ids[: len(cut.ids)] and len(cut.ids) < 40  # proven: the true best, in order
        assert cut.logprobs == sorted(cut.logprobs, reverse=True)


def test_log_probabilities_are_the_sum_of_the_steps_log_softmax(tiny_or_ensemble):
    gen = TorchGenerator.from_checkpoint(tiny_or_ensemble.checkpoint)
    model, _, _ = load_checkpoint(tiny_or_ensemble.checkpoint)
    for prefix in ("", "Ma", "J"):
        found = gen.nbest(prefix, num=8)
        names = [gen.vocab.decode(i) for i in found.ids]
        assert len(set(names)) == len(names) == 8 and all(n.startswith(prefix) for n in names)
        assert found.logprobs == sorted(found.logprobs, reverse=True)
        for ids, lp in zip(found.ids, found.logprobs):
            assert close(lp, sequence_logprob(model, list(ids), gen.vocab.eos_id, gen.vocab.bos_id))
    # and for names the search did not produce (greedy, sampled): score() is the same sum
    sampled = NameGenerator(tiny_or_ensemble.onnx).generate("A", num=4, temperature=1.5, seed=2)
    for name, lp in zip(sampled, gen.logprobs(sampled)):
        assert close(lp, sequence_logprob(model, gen.vocab.encode(name)))


def test_the_best_name_is_at_least_as_likely_as_the_greedy_one(tiny_artifacts):
    gen = NameGenerator(tiny_artifacts.onnx)
    for prefix in ("", "A", "Ma", "Lu"):
        greedy = gen.generate(prefix)
        best = gen.ranked(prefix, search="nbest")[0]
        assert best[1][0] >= gen.logprobs(greedy)[0] - 1e-9


def cli(module: str, *args: str) -> list[tuple[str, float]]:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return [(line.split("\t")[0], float(line.split("\t")[1])) for line in proc.stdout.splitlines()]


def test_every_runtime_gives_the_same_list(tiny_or_ensemble):
    prefixes, num = ["", "Ma", "Jo", "Z"], 6
    eager = TorchGenerator.from_checkpoint(tiny_or_ensemble.checkpoint)
    scripted = TorchGenerator.from_torchscript(tiny_or_ensemble.torchscript)
    onnx = NameGenerator(tiny_or_ensemble.onnx)
    engine = Engine.from_artifacts(tiny_or_ensemble.torchscript, tiny_or_ensemble.vocab_json)
    want = nbest.ranked(eager, prefixes, num=num, max_length=24, temperature=0, top_k=0, seed=None, search=None,
                        max_expansions=nbest.DEFAULT_MAX_EXPANSIONS, scores=True)
    assert all(len(names) == num and complete for names, _, complete in want)

    def same(got):
        assert [names for names, _, _ in got] == [names for names, _, _ in want]
        assert all(close(a, b) for (_, x, _), (_, y, _) in zip(got, want) for a, b in zip(x, y))

    same(nbest.ranked(scripted, prefixes, num=num, max_length=24, temperature=0, top_k=0, seed=None, search=None,
                      max_expansions=nbest.DEFAULT_MAX_EXPANSIONS, scores=True))
    same(onnx.ranked(prefixes, num=num))
    answers = engine.answer([GenerateRequest(prefix=p, num=num) for p in prefixes])
    same([(a.names, a.logprobs, a.complete) for a in answers])
    args = [a for p in prefixes for a in ("--prefix", p)] + ["-n", str(num), "--logprobs"]
    for module, extra in (("export.runtime", ["--model", str(tiny_or_ensemble.onnx)]),
                          ("tools.generate", ["--backend", "torchscript", "--model", str(tiny_or_ensemble.torchscript)])):
        lines = cli(module, *extra, *args)
        same([([n for n, _ in lines[i:i + num]], [x for _, x in lines[i:i + num]], True)
              for i in range(0, len(lines), num)])


def test_which_search_a_request_runs():
    assert nbest.choose_search(None, 1, 0.0) == "greedy"
    assert nbest.choose_search(None, 2, 0.0) == "nbest"
    assert nbest.choose_search(None, 2, 0.0, stream=True) == "greedy"  # streaming stays the loop
    assert nbest.choose_search(None, 5, 0.7) == "sample"
    assert nbest.choose_search("nbest", 1, 0.0) == "nbest"
    assert nbest.choose_search("greedy", 5, 0.0) == "greedy"
    for bad in (("nbest", 2, 0.5, False), ("nbest", 2, 0.0, True), ("greedy", 1, 1.0, False), ("beam", 2, 0, False)):
        with pytest.raises(ValueError):
            nbest.choose_search(*bad)


def test_the_bench_measures_nbest_against_greedy_on_both_backends(tiny_artifacts):
    from bench import nbest as bench_nbest

    result = bench_nbest.measure(tiny_artifacts.dir, repeats=1, letters=4)
    assert result["agree"] is True
    for backend in ("torch", "onnx"):
        for request in ("greedy + logprob", "greedy, names only", "nbest 5", "nbest 20"):
            row = result["rows"][f"{backend}: {request}"]
            assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"]
    assert result["searches"]["nbest 20"]["expansions_mean"] >= result["searches"]["nbest 5"]["expansions_mean"] > 0
    assert "| onnx | nbest 20 |" in bench_nbest.format_table(result)


def test_searches_in_lockstep_give_each_its_own_answer(small_model):
    stepper = TorchStepper(small_model.step, (1, 8))
    queries = [((), 10, 4), ((1,), 3, 5), ((1, 2, 3), 6, 4), ((2,), 1, 2), ((), 40, 6)]
    calls = []

    def counting(tokens, states):
        calls.append(len(tokens))
        return stepper(tokens, states)

    counting.root = stepper.root
    together = nbest.search_many(counting, queries, bos_id=0, eos_id=0, width=4)
    alone = [nbest.search(stepper, p, n, max_length=m, bos_id=0, eos_id=0, width=4) for p, n, m in queries]
    assert [(a.ids, a.complete) for a in together] == [(a.ids, a.complete) for a in alone]
    assert all(close(x, y) for a, b in zip(together, alone) for x, y in zip(a.logprobs, b.logprobs))
    assert len(calls) == max(a.step_calls for a in alone) < sum(a.step_calls for a in alone)
