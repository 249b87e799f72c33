"""Export the checkpoint's step to TorchScript and ONNX, with vocab.json beside and inside both,
plus charrnn_generate.onnx: the whole greedy loop in one ONNX graph (export.generate_graph).

Usage: python -m export --checkpoint artifacts/checkpoint.pt --out-dir artifacts

All files are built and checked (the steps against eager, the one-graph loop against the ONNX
step loop) in a staging folder first, then moved into place together: a failed export leaves
the previous set untouched and never mixes two runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from core import contract, manifest
from core.atomic import exit_on_sigterm, pause_point, signals_deferred, write_text_atomic
from export.generate_graph import export_generate
from export.onnx_step import export_onnx
from export.parity import Parity
from export.torchscript import export_torchscript
from model.checkpoint import CheckpointError, load_checkpoint

ARTIFACTS = dict(zip(("vocab", "torchscript", "onnx", "generate"), contract.EXPORTS))  # the commit order


def export_all(checkpoint: str | Path, out_dir: str | Path) -> dict[str, Parity]:
    model, vocab, ckpt = load_checkpoint(checkpoint)
    text = manifest.dumps(manifest.build_manifest(
        vocab, cell=model.config.cell, hidden_size=model.hidden_size, num_layers=model.num_layers,
        fingerprint=ckpt["fingerprint"]))
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
        export_generate(staging / ARTIFACTS["onnx"], staging / ARTIFACTS["generate"])
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Export the CharRNN step to TorchScript and ONNX.")
    p.add_argument("--checkpoint", default=contract.default_path(contract.CHECKPOINT))
    p.add_argument("--out-dir", default=contract.ART_DIR)
    args = p.parse_args(argv)
    exit_on_sigterm()
    try:
        diffs = export_all(args.checkpoint, args.out_dir)
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}") from None
    for kind, parity in diffs.items():
        print(f"{kind}: {parity}")
    print(f"wrote {', '.join(str(Path(args.out_dir) / n) for n in ARTIFACTS.values())}")


if __name__ == "__main__":
    main()
