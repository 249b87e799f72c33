"""The exporters' one use of ONNX Runtime: run a graph they built, to fold part of it
(export.simplify) or to check what they are about to write (export.onnx_step,
export.generate_graph) before writing it.

The readers that applications load (checksum, input/output names, vocabulary from the
metadata) are runtime/, a layer above the exporters; the exporters call ONNX Runtime as a
library here instead, so that nothing in export/ imports a layer above its own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from core import contract
from core.errors import ArtifactError


def session(data: bytes, source: str) -> ort.InferenceSession:
    """A single-threaded CPU session over the serialized model `data`; ArtifactError names `source`."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # ORT's warnings about unused initializers are not the user's
    try:
        return ort.InferenceSession(bytes(data), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidProtobuf/... types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"{source}: ONNX Runtime cannot load it: {first}") from None


def step(data: bytes, source: str) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The ONNX step `data` as `(char [B] int64, hidden [L, B, H] float32) -> (logits, hidden_out)`."""
    sess = session(data, source)
    char, hidden = contract.STEP_INPUTS

    def run(c: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, hidden_out = sess.run(list(contract.STEP_OUTPUTS), {char: np.asarray(c, dtype=np.int64),
                                                                    hidden: np.asarray(h, dtype=np.float32)})
        return logits, hidden_out

    return run


def greedy_graph(data: bytes, source: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """The one-graph decoder `data` as `(prefix [B, P], prefix_length [B], max_length) -> (ids, length, logprob)`."""
    sess = session(data, source)

    def run(prefix, prefix_length, max_length) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feeds = (np.asarray(prefix, dtype=np.int64), np.asarray(prefix_length, dtype=np.int64),
                 np.array(max_length, dtype=np.int64))
        ids, length, logprob = sess.run(list(contract.GENERATE_OUTPUTS), dict(zip(contract.GENERATE_INPUTS, feeds)))
        return ids, length, logprob

    return run
