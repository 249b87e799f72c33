"""The export parity check (export.parity): refuses real export bugs, passes correct exports of
large-magnitude models, and says what differed, where, by how much and relative to what."""

from __future__ import annotations

import copy

import pytest
import torch

from core import integrity, manifest
from core.vocab import Vocab
from export import parity
from export.onnx_step import export_onnx, to_onnx_model
from export.parity import ExportMismatch
from export.torchscript import export_torchscript
from model.charrnn import CharRNN, ModelConfig
from model.checkpoint import load_checkpoint
from model.decode import decode as torch_decode
from model.decode_numpy import decode
from runtime.step import OnnxStep


def manifest_text(model, vocab) -> str:
    return manifest.dumps(manifest.build_manifest(vocab, cell=model.config.cell, hidden_size=model.hidden_size,
                                                  num_layers=model.num_layers, fingerprint="test"))


def onnx_of(exported_model, vocab):
    """`exported_model` exported to ONNX for real; returns (run, names) over ONNX Runtime."""
    proto = to_onnx_model(exported_model, manifest_text(exported_model, vocab))
    step = OnnxStep.from_bytes(integrity.seal_onnx(proto.SerializeToString()), source="test.onnx")

    def names(rows):
        return decode(step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=step.hidden_shape)

    return (lambda c, h: step(c.numpy(), h.numpy())), names


def scaled(model, factor: float):
    """Every weight times `factor`: the large weights and logits a high learning rate produces."""
    big = copy.deepcopy(model)
    with torch.no_grad():
        for p in big.parameters():
            p.mul_(factor)
    return big


def logit_magnitude(model, vocab) -> float:
    char, hidden = parity.decoding_states(model, vocab)
    with torch.inference_mode():
        return float(model.step(char, hidden)[0].abs().max())


@pytest.mark.parametrize("factor", [1.0, 20.0])
def test_correct_exports_of_every_variant_pass(variant_artifacts, tmp_path, factor):
    model, vocab, _ = load_checkpoint(variant_artifacts.checkpoint)
    model = scaled(model, factor)
    if factor > 1:  # the point of the case: magnitudes far above a 1e-5 absolute bound's comfort
        assert logit_magnitude(model, vocab) > 30
    text = manifest_text(model, vocab)
    for export in (export_onnx, export_torchscript):
        result = export(model, vocab, text, tmp_path / f"{export.__name__}.out")
        assert result.max_share <= 1.0 and result.names == len(vocab.characters) + 1


def eager_of(exported_model, vocab):
    """(run, names) of an "export" that computes exactly what `exported_model` computes."""
    def run(char, hidden):
        with torch.inference_mode():
            return tuple(t.numpy() for t in exported_model.step(char, hidden))

    def names(rows):
        return torch_decode(exported_model.step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                            hidden_shape=(exported_model.num_layers, exported_model.hidden_size))

    return run, names


def one_weight_off(model, name: str, index: tuple[int, ...], delta: float = 1e-3):
    bad = copy.deepcopy(model)
    with torch.no_grad():
        dict(bad.named_parameters())[name][index] += delta
    return bad


def used_char(vocab) -> int:
    """A character real decoding feeds (the first letter of the greedy name from 'empty')."""
    return vocab.encode(vocab.characters[0])[0]


@pytest.mark.parametrize("weight", ["rnn.weight_hh_l0", "rnn.weight_ih_l0", "rnn.bias_hh_l0", "head.weight",
                                    "head.bias"])
def test_one_weight_off_by_1e_3_is_refused(variant_artifacts, weight):
    model, vocab, _ = load_checkpoint(variant_artifacts.checkpoint)
    # every member of an ensemble (members.{i}.rnn...), each in turn; a single model's own
    names = [n for n, _ in model.named_parameters() if n == weight or n.endswith("." + weight)]
    assert names
    for name in names:
        weight_off_is_refused(model, vocab, name, weight)


def weight_off_is_refused(model, vocab, name: str, weight: str) -> None:
    shape = dict(model.named_parameters())[name].shape
    index = (3, used_char(vocab)) if weight == "rnn.weight_ih_l0" else tuple(min(2, s - 1) for s in shape)
    run, names = eager_of(one_weight_off(model, name, index), vocab)
    with pytest.raises(ExportMismatch, match="differs from eager") as refused:
        parity.check(model, vocab, run, names, "ONNX export test.onnx")
    message = str(refused.value)
    assert "ONNX export test.onnx" in message and "not written" in message
    assert ("logits" in message) or ("hidden_out" in message)


@pytest.mark.parametrize("variant_artifacts", ["gru-1"], indirect=True)
def test_a_dropped_gate_bias_in_a_real_onnx_export_is_refused(variant_artifacts):
    model, vocab, _ = load_checkpoint(variant_artifacts.checkpoint)
    bad = copy.deepcopy(model)
    with torch.no_grad():  # the update gate z's recurrent bias (PyTorch's GRU order: r, z, n)
        bad.rnn.bias_hh_l0[model.hidden_size: 2 * model.hidden_size] = 0
    run, names = onnx_of(bad, vocab)
    with pytest.raises(ExportMismatch, match="hidden_out differs from eager|logits differs from eager"):
        parity.check(model, vocab, run, names, "ONNX export")


def test_the_refusal_says_what_where_how_much_and_relative_to_what(tiny_artifacts):
    model, vocab, _ = load_checkpoint(tiny_artifacts.checkpoint)

    def run(char, hidden):  # a correct step, but one hidden value of the 64-row batch is off
        with torch.inference_mode():
            logits, hidden_out = (t.numpy().copy() for t in model.step(char, hidden))
        if len(char) == 64:
            hidden_out[0, 5, 7] += 0.01
        return logits, hidden_out

    with pytest.raises(ExportMismatch) as refused:
        parity.check(model, vocab, run, lambda rows: [], "X export")
    message = str(refused.value)
    assert "hidden_out differs from eager on decoding states, batch 64 at layer 0, row 5, unit 7" in message
    assert "|difference| 0.01" in message and "tolerance" in message
    assert "the largest |value| in that row of eager's hidden_out" in message


def test_greedy_names_must_be_equal_exactly(tiny_artifacts):
    """Values within tolerance are not enough: one different greedy name refuses the export."""
    model, vocab, _ = load_checkpoint(tiny_artifacts.checkpoint)
    run, names = onnx_of(model, vocab)

    def one_name_changed(rows):
        ids = names(rows)
        ids[1] = ids[1][:-1]
        return ids

    assert parity.check(model, vocab, run, names, "ONNX").names == len(vocab.characters) + 1
    with pytest.raises(ExportMismatch, match="the greedy name for prefix") as refused:
        parity.check(model, vocab, run, one_name_changed, "ONNX")
    assert "more than rounding explains" in str(refused.value) and "near-tie" not in str(refused.value)


def test_a_greedy_name_parting_at_a_near_tie_is_refused_and_called_one():
    """Two symbols with equal logits: eager takes the first, an export that takes the other is
    still refused (names are exact), but the message says the two were tied to rounding."""
    vocab = Vocab.from_names(["ab"])
    model = CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=4)).eval()
    a, b = vocab.encode("ab")
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[[a, b]] = 3.0

    def run(char, hidden):
        with torch.inference_mode():
            return tuple(t.numpy() for t in model.step(char, hidden))

    def names(rows):
        ids = torch_decode(model.step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=(1, 4))
        ids[0] = [b] + ids[0][1:]  # the empty prefix's name starts with the other tied symbol
        return ids

    with pytest.raises(ExportMismatch) as refused:
        parity.check(model, vocab, run, names, "ONNX")
    message = str(refused.value)
    assert "the greedy name for prefix ''" in message and "they part at character 1" in message
    assert "exceeds that for 'b' by 0 " in message and "a near-tie" in message


def test_probes_are_states_of_real_decoding(tiny_artifacts):
    model, vocab, _ = load_checkpoint(tiny_artifacts.checkpoint)
    probes = parity.probes(model, vocab)
    assert [len(p.char) for p in probes[:3]] == list(parity.PROBE_BATCH_SIZES)
    every = probes[3]
    # the first state of every decoded row is (begin-of-name, zeros); the later ones are not zeros
    assert int((every.char == vocab.bos_id).sum()) >= len(vocab.characters) + 1
    assert float(every.hidden.abs().max()) > 0.1
    assert float(every.hidden.abs().max()) < 1.0  # a tanh state, not randn


def test_the_parity_rule_is_relative_to_the_rows_largest_value_with_a_floor():
    """The one rule every float comparison across kernels uses (tests, gpu-check, the export check)."""
    big, small = 40.0, 1e-3
    row = [big, small]
    # a row's tolerance is ATOL + RTOL x its largest |value|, for every element of the row
    assert parity.tolerance(row).tolist() == [parity.ATOL + parity.RTOL * big] * 2
    assert parity.close(row, [big * (1 + 0.9 * parity.RTOL), small + 0.9 * parity.RTOL * big])
    assert not parity.close(row, [big * (1 + 1.1 * parity.RTOL), small])
    # each row has its own magnitude: a row of small values is not excused by a large one elsewhere
    assert not parity.close([[big, big], [small, small]], [[big, big], [small, small + 0.9 * parity.RTOL * big]])
    # the floor, for rows of zeros; a scalar is its own row
    assert parity.close([0.0, 0.0], [0.9 * parity.ATOL, 0.0]) and not parity.close([0.0], [1.1 * parity.ATOL])
    assert parity.close(-7.0, -7.0 * (1 + 0.9 * parity.RTOL)) and not parity.close(-7.0, -7.0 * (1 + 1.1 * parity.RTOL))
    # values rounded to a grid (answers sent with 6 decimals) get that grid on top
    assert not parity.close([0.001], [0.0015]) and parity.close([0.001], [0.0015], rounding=0.001)
    assert not parity.close([0.001], [0.0025], rounding=0.001)
    # an infinity only matches itself (a masked logit); NaN, other shapes and lengths never match
    inf = float("inf")
    assert parity.close([-inf, 1.0], [-inf, 1.0]) and not parity.close([-inf, 1.0], [inf, 1.0])
    assert not parity.close([1.0, 2.0], [-inf, 2.0]) and not parity.close([float("nan")], [float("nan")])
    assert not parity.close([1.0, 2.0], [1.0, 2.0, 3.0]) and parity.close([], [])
    assert parity.shares(row, row).tolist() == [0.0, 0.0]
