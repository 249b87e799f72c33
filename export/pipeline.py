"""Every export of one checkpoint, built and checked together: vocab.json, the TorchScript and
ONNX steps (each against eager, export.parity) and charrnn_generate.onnx (the one-graph greedy
loop: names against the ONNX step loop, log-probabilities against eager's), in a staging folder
first, then moved into place together: a failed export leaves the previous set untouched and
never mixes two runs. `python -m export` is its command line.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from core import contract, manifest
from core.atomic import pause_point, signals_deferred, write_text_atomic
from export.generate_graph import export_generate
from export.onnx_step import export_onnx
from export.parity import Parity
from export.torchscript import export_torchscript
from model.checkpoint import load_checkpoint
from model.ensemble import members_of
from model.nbest_torch import TorchStepper

ARTIFACTS = dict(zip(("vocab", "torchscript", "onnx", "generate"), contract.EXPORTS))  # the commit order


def export_all(checkpoint: str | Path, out_dir: str | Path) -> dict[str, Parity]:
    """Write every export of `checkpoint` into `out_dir`, all or none; each step's parity with eager."""
    model, vocab, ckpt = load_checkpoint(checkpoint)
    text = manifest.dumps(manifest.build_manifest(
        vocab, cell=model.config.cell, hidden_size=model.hidden_size, num_layers=model.num_layers,
        fingerprint=ckpt["fingerprint"], members=len(members_of(model))))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        write_text_atomic(staging / ARTIFACTS["vocab"], text)
        diffs = {
            "torchscript": export_torchscript(model, vocab, text, staging / ARTIFACTS["torchscript"]),
            "onnx": export_onnx(model, vocab, text, staging / ARTIFACTS["onnx"]),
        }
        # the one-graph greedy loop, built from the checked step and compared with its loop
        # (names) and with eager (log-probabilities)
        eager = TorchStepper(model.cpu().eval().step, (model.num_layers, model.hidden_size))
        export_generate(staging / ARTIFACTS["onnx"], staging / ARTIFACTS["generate"], eager, "eager")
        pause_point("export-staged")  # tests signal at these points (core.atomic.pause_point)
        with signals_deferred():  # the set changes together or not at all
            for i, name in enumerate(ARTIFACTS.values()):
                os.replace(staging / name, out_dir / name)
                if i == 0:
                    pause_point("export-commit")
    finally:
        # held signals: a second SIGTERM (make forwards one to its recipe) must not cut this short
        with signals_deferred():
            shutil.rmtree(staging, ignore_errors=True)
    return diffs
