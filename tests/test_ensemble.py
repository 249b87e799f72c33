"""An ensemble (model.ensemble) is one recurrent step with a single model's contract: its logits
are the log of its members' mean next-character probabilities and its state holds theirs side by
side, in eager PyTorch and in every export; `python -m export` writes and checks the whole set for
it as for one model. (Every consumer serving it: the tests that take `tiny_or_ensemble`,
`variant_artifacts` "ens" and the handler's `served`.)"""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from core import contract
from core.request import Row
from export import parity
from model.checkpoint import load_checkpoint
from model.ensemble import CharRNNEnsemble, members_of
from model.generate import TorchGenerator
from model.torchscript import load_torchscript
from runtime.generator import NameGenerator
from runtime.step import OnnxStep
from tests.conftest import ENSEMBLE_MEMBERS, assert_close


@pytest.fixture(scope="module")
def ensemble(tiny_ensemble):
    model, vocab, _ = load_checkpoint(tiny_ensemble.checkpoint)
    return model, vocab


def definition(model: CharRNNEnsemble, char: torch.Tensor, hidden: torch.Tensor):
    """The ensemble step by its definition, from each member's own step on its slice of the state:
    (log(1/K sum_k softmax(logits_k)) in float64, the members' new states side by side)."""
    members = members_of(model)
    probs, states = [], []
    with torch.inference_mode():
        for member, h in zip(members, hidden.split([m.hidden_size for m in members], dim=2)):
            logits, state = member.step(char, h.contiguous())
            probs.append(torch.softmax(logits.double(), dim=-1))
            states.append(state)
    return torch.log(torch.stack(probs).mean(dim=0)).numpy(), torch.cat(states, dim=2).numpy()


def inputs(model, vocab) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """The states real decoding feeds the step (export.parity's), and random ones over (-1, 1)."""
    char, hidden = parity.decoding_states(model, vocab)
    generator = torch.Generator().manual_seed(0)
    random = (torch.randint(0, model.vocab_size, (64,), generator=generator),
              torch.rand(model.num_layers, 64, model.hidden_size, generator=generator) * 2 - 1)
    return [("decoding states", char, hidden), ("random states", *random)]


def test_the_ensemble_is_its_members_side_by_side(ensemble):
    model, _ = ensemble
    assert isinstance(model, CharRNNEnsemble)
    assert [(m.config.cell, m.hidden_size) for m in members_of(model)] == \
        [(m["cell"], m["hidden_size"]) for m in ENSEMBLE_MEMBERS]
    assert model.hidden_size == sum(m["hidden_size"] for m in ENSEMBLE_MEMBERS)


def test_every_step_is_the_log_of_the_members_mean_probabilities(ensemble, tiny_ensemble):
    """Eager, TorchScript and ONNX Runtime: logits == log mean_k softmax(member_k's logits) and
    hidden_out == the members' new states concatenated, by the parity rule (relative, with a
    small absolute floor): float32 against the float64 definition, and other kernels."""
    model, vocab = ensemble
    scripted, _, _ = load_torchscript(tiny_ensemble.torchscript)
    step = OnnxStep.from_path(tiny_ensemble.onnx)
    steps = {"eager": lambda c, h: [t.numpy() for t in model.step(c, h)],
             "torchscript": lambda c, h: [t.numpy() for t in scripted(c, h)],
             "onnx": lambda c, h: step(c.numpy(), h.numpy())}
    for where, char, hidden in inputs(model, vocab):
        want_logits, want_hidden = definition(model, char, hidden)
        for backend, run in steps.items():
            with torch.inference_mode():
                logits, hidden_out = run(char, hidden)
            assert_close(logits, want_logits, f"{backend} logits, {where}")
            assert_close(hidden_out, want_hidden, f"{backend} hidden_out, {where}")


def test_forward_over_names_is_the_mean_of_the_members_forward(ensemble):
    """The whole-sequence forward (evaluation, a student's teacher) by the same definition."""
    model, vocab = ensemble
    chars = torch.tensor([[vocab.bos_id, *vocab.encode(name)] for name in ("Maria", "Júlia", "Bruno")])
    with torch.inference_mode():
        logits, hidden = model(chars)
        outs = [member(chars) for member in members_of(model)]
    probs = torch.stack([torch.softmax(o[0].double(), dim=-1) for o in outs]).mean(dim=0)
    assert_close(logits.numpy(), torch.log(probs).numpy(), "forward logits")
    assert_close(hidden.numpy(), torch.cat([o[1] for o in outs], dim=2).numpy(), "forward hidden")


def test_python_m_export_writes_the_whole_set_for_an_ensemble(tiny_ensemble, ensemble, tmp_path, capsys):
    """The export command (`python -m export`'s main, in this process) on an ensemble's
    checkpoint: the four files, each checked against eager (the command fails otherwise);
    vocab.json says how many members the step averages and sizes the state as their sizes
    summed; the files are the same step as the eager ensemble's."""
    from export.__main__ import main

    model, vocab = ensemble
    out = tmp_path / "out"
    main(["--checkpoint", str(tiny_ensemble.checkpoint), "--out-dir", str(out)])
    printed = capsys.readouterr().out
    names = len(vocab.characters) + 1  # every first letter and the empty prefix, equal to eager's
    assert printed.count(f"{names} greedy names equal") == 2 and "torchscript: " in printed and "onnx: " in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(contract.EXPORTS)
    meta = json.loads((out / contract.VOCAB).read_text(encoding="utf-8"))
    assert meta["members"] == len(ENSEMBLE_MEMBERS) and meta["hidden_size"] == model.hidden_size
    assert meta["num_layers"] == model.num_layers and meta["cell"] == "mixed"
    assert meta["fingerprint"] == load_checkpoint(tiny_ensemble.checkpoint)[2]["fingerprint"]
    hidden = onnx.load(str(out / contract.ONNX_STEP)).graph.input[1].type.tensor_type.shape.dim
    assert [d.dim_value for d in hidden][::2] == [model.num_layers, model.hidden_size]
    # greedy names: exact, one-graph loop and step loop against eager
    prefixes = ["", "Ma", "Jo", "Antô"]
    rows = [Row(tuple(vocab.encode(p))) for p in prefixes]
    want = TorchGenerator.from_checkpoint(tiny_ensemble.checkpoint).generate_rows(rows)
    assert NameGenerator(out / contract.ONNX_STEP, generate_model=out / contract.ONNX_GENERATE).generate(prefixes) == want
    assert TorchGenerator.from_torchscript(out / contract.TORCHSCRIPT).generate_rows(rows) == want


def test_a_damaged_ensemble_artifact_is_refused_or_harmless(tiny_ensemble, tmp_path):
    """soak/corrupt's loaders on an ensemble's files: every truncated, bit-flipped or
    vocabulary-swapped file is refused naming it, or loads and behaves as the original (the
    tiny model's files get the thorough version, tests/test_reliability_artifacts.py)."""
    from soak import corrupt

    rows = corrupt.matrix(tiny_ensemble.dir, None, flips=1, work=tmp_path)
    assert {r["artifact"] for r in rows} == {contract.CHECKPOINT, *contract.EXPORTS}
    assert all(r["outcome"] in corrupt.OK for r in rows), [r for r in rows if r["outcome"] not in corrupt.OK]
    assert all(r["outcome"] == "rejected" for r in rows if r["kind"] != "flip")
