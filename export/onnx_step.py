"""The ONNX step: inputs `char` int64 [batch], `hidden` float32 [num_layers, batch, hidden_size];
outputs `logits` [batch, vocab_size], `hidden_out`; vocab.json in metadata_props, and the content
checksum `charrnn.sha256` appended as the last entry (core.integrity)."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import onnx
import torch

from core import contract, integrity, manifest
from core.atomic import write_bytes_atomic
from core.vocab import Vocab
from export import onnx_check
from export.parity import Parity, check
from export.simplify import simplify_step
from model.charrnn import CharRNN
from model.decode_numpy import decode
from model.ensemble import CharRNNEnsemble

INPUT_NAMES = list(contract.STEP_INPUTS)
OUTPUT_NAMES = list(contract.STEP_OUTPUTS)
OPSET = 18


def to_onnx_model(model: CharRNN | CharRNNEnsemble, manifest_text: str) -> onnx.ModelProto:
    """The step as saved: the exporter's graph, simplified (exact rewrites that cut the nodes
    ONNX Runtime runs per step: 9 -> 6 for the default RNN), with vocab.json in its metadata."""
    proto = simplify_step(exported_graph(model), model.vocab_size)
    proto.doc_string = "CharRNN single step: (char, hidden) -> (logits, hidden_out)"
    onnx.helper.set_model_props(proto, {manifest.VOCAB_KEY: manifest_text})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def exported_graph(model: CharRNN | CharRNNEnsemble) -> onnx.ModelProto:
    """The step as the dynamo exporter (torch.export based) writes it.

    Why dynamo and not the legacy TorchScript-based exporter: torch 2.13 makes dynamo the
    default, the legacy path warns that it will be removed, and dynamo's graph for one step is
    plain MatMul/Add/Tanh (no opaque RNN op), which every ONNX runtime runs and which the
    one-graph decoder can inline; export.parity checks it against eager before it is written.
    """
    model = model.cpu().eval()
    batch = torch.export.Dim("batch", min=1)
    example = (torch.zeros(2, dtype=torch.long), model.init_hidden(2))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            model.as_step(), example, dynamo=True, opset_version=OPSET, verbose=False,
            input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
            dynamic_shapes=({0: batch}, {1: batch}),  # (char, hidden), by position
        )
    program.save(buffer)
    return onnx.load_from_string(buffer.getvalue())


def export_onnx(model: CharRNN | CharRNNEnsemble, vocab: Vocab, manifest_text: str, path: str | Path) -> Parity:
    """Export, compare with eager under ONNX Runtime (export.parity; names by the numpy loop the
    runtime decodes with), and write `path` only if they agree."""
    proto = to_onnx_model(model, manifest_text)
    data = integrity.seal_onnx(proto.SerializeToString())
    step = onnx_check.step(data, str(path))

    def names(rows):
        return decode(step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                      hidden_shape=(model.num_layers, model.hidden_size))

    parity = check(model, vocab, lambda c, h: step(c.numpy(), h.numpy()), names, f"ONNX export {path}")
    write_bytes_atomic(path, data)
    return parity
