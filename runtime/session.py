"""Loading one of our ONNX files under ONNX Runtime: the session options for a tiny model, the
file's sealed checksum (core.integrity), its input/output names (core.contract) and the
vocabulary from its metadata (core.manifest)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core import integrity, manifest
from core.errors import ArtifactError
from core.vocab import VocabError

if TYPE_CHECKING:  # imported where a session is made: the handler imports this module on GPU
    import onnxruntime as ort  # machines without ONNX Runtime


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Options for a tiny model on few cores.

    A step is a few [B, H] x [H, H] products: thread hand-offs cost more than they save, so one
    intra-op thread, sequential: on few cores a second thread gains nothing at batch 1 and its
    spinning fights the first for a core at large batches. The exported graphs are already plain
    ops, so the optimisation level matters little; ORT_ENABLE_ALL costs only load time. For more
    cores, run one session per core (threads=1 each) rather than threads > 1."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


class OnnxModel:
    """A CPU session over one of our ONNX files: checks its input/output names and reads the
    vocabulary from its metadata."""

    INPUTS: tuple[str, ...] = ()
    OUTPUTS: tuple[str, ...] = ()

    def __init__(self, session: ort.InferenceSession, source: str):
        self.session = session
        self.source = source
        self.output_names = list(self.OUTPUTS)  # session.run's argument, made once
        names_in = tuple(i.name for i in session.get_inputs())
        names_out = tuple(o.name for o in session.get_outputs())
        if names_in != self.INPUTS or names_out != self.OUTPUTS:
            raise ArtifactError(f"{source}: expected inputs {self.INPUTS} and outputs {self.OUTPUTS}, "
                                f"got {names_in} and {names_out}")
        text = read_metadata(session, source).get(manifest.VOCAB_KEY)
        if not text:
            raise ArtifactError(f"{source}: no {manifest.VOCAB_KEY!r} in the model metadata")
        try:
            self.vocab, self.meta = manifest.parse(text, source)
        except VocabError as exc:
            raise ArtifactError(str(exc)) from None
        self.hidden_shape = (self.meta["num_layers"], self.meta["hidden_size"])

    @classmethod
    def from_path(cls, path: str | Path, threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: ONNX model not found")
        return cls.from_bytes(path.read_bytes(), str(path), threads)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<onnx>", threads: int = 1):
        """Load from the file's bytes; its sealed content checksum (core.integrity) must match."""
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(data, session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidProtobuf/... types
            raise ArtifactError(f"{source}: not a loadable ONNX model (truncated or corrupted?): "
                                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
        metadata = read_metadata(session, source)
        if manifest.VOCAB_KEY in metadata:  # without it, __init__ names the missing vocabulary
            integrity.check_onnx(bytes(data), source, metadata)
        return cls(session, source)


def read_metadata(session: ort.InferenceSession, source: str) -> dict[str, str]:
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception as exc:  # noqa: BLE001 - e.g. UnicodeDecodeError on damaged metadata
        raise ArtifactError(f"{source}: unreadable model metadata (corrupted?): {type(exc).__name__}") from None


