"""Eager, TorchScript and ONNX Runtime compute the same step, and the artifacts agree."""

import copy
import json

import onnx
import pytest
import torch

from core import manifest
from core.errors import ArtifactError
from core.request import Row
from export import parity
from export.parity import ExportMismatch
from export.pipeline import export_all
from model.checkpoint import load_checkpoint
from model.generate import TorchGenerator
from model.torchscript import load_torchscript
from runtime.generator import NameGenerator
from runtime.step import OnnxStep


@pytest.fixture
def artifacts(variant_artifacts):
    return variant_artifacts


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_step_parity_eager_torchscript_onnx(artifacts, batch):
    model, _, _ = load_checkpoint(artifacts.checkpoint)
    scripted, _, _ = load_torchscript(artifacts.torchscript)
    step = OnnxStep.from_path(artifacts.onnx)
    generator = torch.Generator().manual_seed(batch)
    char = torch.randint(0, model.vocab_size, (batch,), generator=generator)
    hidden = torch.randn(model.num_layers, batch, model.hidden_size, generator=generator) * 3  # saturating
    with torch.inference_mode():
        want = [t.numpy() for t in model.step(char, hidden)]
        script = [t.numpy() for t in scripted(char, hidden)]
    onnx_out = step(char.numpy(), hidden.numpy())
    for what, got in (("torchscript", script), ("onnx", onnx_out)):
        for output, w, g in zip(("logits", "hidden_out"), want, got):
            parity.compare(w, g, output, f"batch {batch}", what)


def test_greedy_names_from_every_first_letter_agree_across_backends(artifacts):
    eager = TorchGenerator.from_checkpoint(artifacts.checkpoint)
    script = TorchGenerator.from_torchscript(artifacts.torchscript)
    ort = NameGenerator(artifacts.onnx)
    rows = [Row(eager.vocab.encode(ch)) for ch in eager.vocab.characters] + [Row(())]
    names = eager.generate_rows(rows)
    assert script.generate_rows(rows) == names
    assert ort.generate_rows(rows) == names
    assert all(name.startswith(eager.vocab.decode(row.prefix)) for name, row in zip(names, rows))


def test_artifacts_share_one_vocabulary_and_fingerprint(artifacts):
    on_disk = json.loads(artifacts.vocab_json.read_text())
    _, vocab, ckpt = load_checkpoint(artifacts.checkpoint)
    _, _, ts_meta = load_torchscript(artifacts.torchscript)
    proto = onnx.load(str(artifacts.onnx))
    onnx_meta = json.loads({p.key: p.value for p in proto.metadata_props}[manifest.VOCAB_KEY])
    assert on_disk == ts_meta == onnx_meta
    assert on_disk["symbols"] == list(vocab.symbols)
    assert on_disk["bos_id"] == vocab.bos_id and on_disk["eos_id"] == vocab.eos_id
    assert on_disk["fingerprint"] == ckpt["fingerprint"]


def test_onnx_contract_names_dynamic_batch_and_checker(tiny_artifacts):
    proto = onnx.load(str(tiny_artifacts.onnx))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["char", "hidden"]
    assert [o.name for o in proto.graph.output] == ["logits", "hidden_out"]
    char, hidden = proto.graph.input
    assert char.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert hidden.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert char.type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert hidden.type.tensor_type.shape.dim[1].dim_param


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_exports_are_one_clear_error(tiny_artifacts, tmp_path, damage):
    for source, loader in ((tiny_artifacts.onnx, OnnxStep.from_path), (tiny_artifacts.torchscript, load_torchscript)):
        data = bytearray(source.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 3]
        else:
            data[: 64] = bytes(64)
        bad = tmp_path / source.name
        bad.write_bytes(bytes(data))
        with pytest.raises(ArtifactError, match=str(bad)):
            loader(bad)


def test_onnx_without_vocabulary_metadata_is_refused(tiny_artifacts, tmp_path):
    proto = onnx.load(str(tiny_artifacts.onnx))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(ArtifactError, match="no 'vocab.json'"):
        OnnxStep.from_path(tmp_path / "bare.onnx")


def test_export_refuses_to_write_on_mismatch_and_keeps_previous_files(tiny_artifacts, tmp_path, monkeypatch):
    """A refused export of ANOTHER checkpoint (every file would differ) changes no file."""
    from tests.conftest import build_artifacts

    out = tmp_path / "out"
    export_all(tiny_artifacts.checkpoint, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = build_artifacts(tmp_path / "other", epochs=2, seed=7).checkpoint

    import export.onnx_step

    exported_graph = export.onnx_step.exported_graph

    def one_weight_off(model):  # an exporter bug: the graph carries a wrong weight
        model = copy.deepcopy(model)
        with torch.no_grad():
            model.head.bias[1] += 1e-3
        return exported_graph(model)

    monkeypatch.setattr(export.onnx_step, "exported_graph", one_weight_off)
    with pytest.raises(ExportMismatch, match="logits differs from eager.*not written"):
        export_all(other, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    monkeypatch.setattr(export.onnx_step, "exported_graph", exported_graph)
    export_all(other, out)  # the same export, unbroken, replaces every file
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(after) == sorted(before) and all(after[n] != before[n] for n in before)
