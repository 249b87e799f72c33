"""charrnn_generate.onnx: the whole greedy loop in one graph gives the step loop's names and
eager's log-probabilities, for RNN, 2-layer RNN and GRU; its contract; export refuses a graph
that disagrees."""

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from core.request import Row
from export import onnx_check
from export.generate_graph import INPUTS, OUTPUTS, ScaledScorer, build_generate_model
from export.onnx_step import exported_graph
from export.parity import ExportMismatch
from export.pipeline import export_all
from export.simplify import drop_squeeze_pairs, tabulate_char_inputs
from export.tolerance import allowed
from model.checkpoint import load_checkpoint
from model.decode_numpy import decode
from model.generate import TorchGenerator
from model.nbest import NumpyStepper, score
from model.nbest_torch import TorchStepper
from runtime.generator import NameGenerator
from runtime.greedy import OnnxGreedy
from runtime.step import OnnxStep


@pytest.fixture
def artifacts(variant_artifacts):
    return variant_artifacts


def generate_path(artifacts):
    return artifacts.dir / "charrnn_generate.onnx"


def step_loop(step: OnnxStep, rows):
    return decode(step, rows, bos_id=step.vocab.bos_id, eos_id=step.vocab.eos_id, hidden_shape=step.hidden_shape)


def test_every_first_letter_gives_the_eager_and_step_loop_names(artifacts):
    eager = TorchGenerator.from_checkpoint(artifacts.checkpoint)
    one_graph = NameGenerator(artifacts.onnx, generate_model=generate_path(artifacts))
    rows = [Row(())] + [Row(eager.vocab.encode(ch)) for ch in eager.vocab.characters]
    names = eager.generate_rows(rows)
    assert one_graph.generate_rows(rows) == names
    assert [one_graph.generate_rows([row])[0] for row in rows] == names  # batch 1 too


def test_mixed_prefixes_and_length_caps_in_one_batch(artifacts, tiny_names):
    step, greedy = OnnxStep.from_path(artifacts.onnx), OnnxGreedy.from_path(generate_path(artifacts))
    prefixes = ["", "A", "Ma", "João", "Maria Cl", "Z", "Valentina"] + [n[:3] for n in tiny_names]
    rows = [Row(step.vocab.encode(p), max_length=max(1, len(p)) + extra)
            for i, p in enumerate(prefixes) for extra in (0, 1, 2 + i % 5, 30)]
    want = step_loop(step, rows)
    assert greedy.decode(rows) == want
    assert greedy.decode(rows[::-1]) == want[::-1]


def test_contract_names_types_metadata_and_padding(tiny_artifacts):
    proto = onnx.load(str(generate_path(tiny_artifacts)))
    onnx.checker.check_model(proto, full_check=True)
    types = {v.name: v.type.tensor_type for v in [*proto.graph.input, *proto.graph.output]}
    assert tuple(i.name for i in proto.graph.input) == INPUTS
    assert tuple(o.name for o in proto.graph.output) == OUTPUTS == ("ids", "length", "logprob")
    assert [types[n].elem_type for n in INPUTS + OUTPUTS] == [onnx.TensorProto.INT64] * 5 + [onnx.TensorProto.FLOAT]
    assert [len(types[n].shape.dim) for n in INPUTS + OUTPUTS] == [2, 1, 0, 2, 1, 1]
    step_meta = {p.key: p.value for p in onnx.load(str(tiny_artifacts.onnx)).metadata_props}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta.pop("charrnn.sha256") != step_meta.pop("charrnn.sha256")  # each file's own checksum
    assert meta == step_meta  # the same vocab.json

    greedy = OnnxGreedy.from_path(generate_path(tiny_artifacts))
    eos = greedy.vocab.eos_id
    prefix = np.array([greedy.vocab.encode("Ma"), [eos, eos]], dtype=np.int64)
    ids, length, logprob = greedy(prefix, np.array([2, 0]), 24)
    assert ids.dtype == length.dtype == np.int64 and ids.shape[0] == 2 and ids.shape[1] <= 24
    assert logprob.dtype == np.float32 and logprob.shape == (2,) and (logprob < 0).all()
    for row, n in zip(ids.tolist(), length.tolist()):
        assert n >= 1 and eos not in row[:n] and all(i == eos for i in row[n:])
    assert greedy.vocab.decode(ids[0]).startswith("Ma")
    # an empty [batch, 0] prefix and a cap of one character
    ids, length, logprob = greedy(np.zeros((3, 0), dtype=np.int64), np.zeros(3), 1)
    assert ids.shape == (3, 1) and length.tolist() == [1, 1, 1] and logprob.shape == (3,)


def test_both_models_load_without_onnx_runtime_warnings(artifacts):
    """An embedder loads the files with ONNX Runtime's default logging: nothing unused in them
    (ORT warns about each unused initializer or constant), so nothing printed."""
    code = ("import sys, onnxruntime as ort\n"
            "for path in sys.argv[1:]:\n"
            "    ort.InferenceSession(path, providers=['CPUExecutionProvider'])\n")
    done = subprocess.run([sys.executable, "-c", code, str(artifacts.onnx), str(generate_path(artifacts))],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == done.stderr == "", done.stderr


def test_the_step_simplifications_are_exact(artifacts):
    """The exporter's step against the simplified one (what charrnn.onnx holds): the char-only
    part as lookup tables, Squeeze/Unsqueeze round trips gone, fewer nodes, and the same
    outputs bit for bit."""
    model, _, _ = load_checkpoint(artifacts.checkpoint)
    step = exported_graph(model)
    vocab_size = model.vocab_size
    simple = drop_squeeze_pairs(tabulate_char_inputs(step, vocab_size))
    assert len(simple.graph.node) < len(step.graph.node)
    onnx.checker.check_model(simple, full_check=True)
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (step, simple)]
    rng = np.random.default_rng(0)
    layers, _, size = (d.dim_value for d in step.graph.input[1].type.tensor_type.shape.dim)
    for batch in (1, 5, 64):
        feed = {"char": rng.integers(0, vocab_size, batch), "hidden": rng.normal(0, 2, (layers, batch, size)).astype(np.float32)}
        want, got = (s.run(None, feed) for s in sessions)
        for w, g in zip(want, got):  # exact by construction: the tables hold what the removed nodes
            np.testing.assert_array_equal(g, w)  # computed; the rest are the same nodes on the same shapes


def test_the_saved_step_is_already_simplified(artifacts):
    """charrnn.onnx itself carries the char lookup as a table and no reshaping round trips, so
    every embedder's step loop runs the fewer nodes; simplifying it again changes nothing."""
    step = onnx.load(str(artifacts.onnx))
    ops = [n.op_type for n in step.graph.node]
    assert "GatherND" not in ops and "Squeeze" not in ops
    assert any(n.op_type == "Gather" and n.input[1] == "char" for n in step.graph.node)
    vocab_size = OnnxStep.from_path(artifacts.onnx).meta["vocab_size"]
    again = drop_squeeze_pairs(tabulate_char_inputs(step, vocab_size))
    assert [n.op_type for n in again.graph.node] == ops


def test_the_loop_body_carries_rows_and_layers_and_biases_the_head(artifacts):
    """The per-character rewrites apply to every variant (RNN, 2-layer RNN, GRU, an ensemble of
    a GRU and an RNN): the body reads neither `char` nor the stacked `hidden`, forces the prefix
    by adding a bias row to the step's own logits (no per-step Less/Where), and each layer's
    state (each member's, in an ensemble) is its own carried tensor, written by no reshaping
    node; the logits themselves are emitted per step (the log-probability after the loop)."""
    model = build_generate_model(onnx.load(str(artifacts.onnx)))
    loop = next(n for n in model.graph.node if n.op_type == "Loop")
    body = loop.attribute[0].g
    carried = [i.name for i in body.input][2:]
    meta = OnnxStep.from_path(artifacts.onnx).meta
    assert "step/char" not in carried and "step/hidden" not in carried
    # the carried values: lookup rows (each paired with its `.next` row), the states, `alive`
    outputs = {o.name for o in body.output}
    states = [i for i in body.input[2:] if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
              and i.name + ".next" not in outputs]
    assert len(states) == meta["num_layers"] * meta["members"]
    assert sum(i.type.tensor_type.shape.dim[1].dim_value for i in states) == meta["num_layers"] * meta["hidden_size"]
    assert all(len(i.type.tensor_type.shape.dim) == 2 for i in states)
    producer = {o: n for n in body.node for o in n.output}
    state_outs = [o.name for o in body.output[1:1 + len(carried)] if o.name in producer]
    assert all(producer[o].op_type not in ("Unsqueeze", "Concat", "Split", "Gather") for o in state_outs
               if not o.endswith(".next"))
    ops = [n.op_type for n in body.node]
    assert "Where" not in ops and "Less" not in ops
    if meta["members"] == 1:  # an ensemble's mean stacks its members' log-probabilities (Unsqueeze)
        assert "Unsqueeze" not in ops
    biased = next(n for n in body.node if "step/logits" in n.input)
    assert biased.op_type == "Add" and set(biased.input) == {"step/logits", "bias_t"}
    assert next(n for n in body.node if biased.output[0] in n.input).op_type == "ArgMax"
    assert "step/logits" in [o.name for o in body.output]


def test_export_refuses_a_one_graph_model_that_disagrees(tiny_artifacts, tmp_path, monkeypatch):
    out = tmp_path / "out"
    export_all(tiny_artifacts.checkpoint, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "charrnn_generate.onnx" in before

    original = onnx_check.greedy_graph

    def one_character_short(data, source):  # a graph whose names end one character early
        run = original(data, source)

        def shorter(*feeds):
            ids, length, logprob = run(*feeds)
            return ids, np.maximum(length - 1, 1), logprob

        return shorter

    monkeypatch.setattr(onnx_check, "greedy_graph", one_character_short)
    with pytest.raises(ExportMismatch, match="one-graph ONNX export .* not written"):
        export_all(tiny_artifacts.checkpoint, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_logprob_is_the_names_log_probability_under_eager_and_the_onnx_step(artifacts, tiny_names):
    """The graph's logprob is model.nbest's log p(name) (what the server's second pass used to
    compute): every first letter, mixed prefixes and caps in one batch (names cut at their cap
    score the end token after their last character, also when a longer cap in the same batch let
    the graph run past it), against eager's and the ONNX step's scores."""
    eager = TorchGenerator.from_checkpoint(artifacts.checkpoint)
    step, greedy = OnnxStep.from_path(artifacts.onnx), OnnxGreedy.from_path(generate_path(artifacts))
    vocab = step.vocab
    prefixes = ["", "A", "Ma", "João"] + [c for c in vocab.characters] + [n[:3] for n in tiny_names]
    rows = [Row(vocab.encode(p), max_length=max(1, len(p)) + extra) for i, p in enumerate(prefixes)
            for extra in ((0, 2, 30)[i % 3], 1)]
    ids, logprobs = greedy.decode_scored(rows)
    assert ids == step_loop(step, rows)
    assert any(len(i) == r.max_length for i, r in zip(ids, rows))  # some names were cut at their cap
    steppers = {"eager": TorchStepper(eager.step, eager.hidden_shape), "onnx step": NumpyStepper(step, step.hidden_shape)}
    for label, stepper in steppers.items():
        want, scales = ScaledScorer(stepper).score(ids, vocab.bos_id, vocab.eos_id)  # model.nbest.score
        assert want == score(stepper, ids, bos_id=vocab.bos_id, eos_id=vocab.eos_id)
        assert all(abs(g - w) <= allowed(m) for g, w, m in zip(logprobs, want, scales)), label
    # alone or in any batch: the same value
    alone = [greedy.decode_scored([row])[1][0] for row in rows[:12]]
    assert alone == pytest.approx(logprobs[:12], rel=1e-6, abs=1e-6)


def test_export_refuses_a_graph_whose_logprob_disagrees(tiny_artifacts, tmp_path, monkeypatch):
    """A logprob off by 0.1 % (far below any term a graph could drop, far above float32
    rounding) is refused, naming the row, and nothing is written."""
    out = tmp_path / "out"
    export_all(tiny_artifacts.checkpoint, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    original = onnx_check.greedy_graph

    def slightly_off(data, source):
        run = original(data, source)

        def scored(*feeds):
            ids, length, logprob = run(*feeds)
            return ids, length, logprob * np.float32(1.001)

        return scored

    monkeypatch.setattr(onnx_check, "greedy_graph", slightly_off)
    with pytest.raises(ExportMismatch, match=r"logprob of row 0 .*, eager's .* not written"):
        export_all(tiny_artifacts.checkpoint, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
