"""Export the checkpoint's step to TorchScript and ONNX, with vocab.json beside and inside both,
plus charrnn_generate.onnx: the whole greedy loop in one ONNX graph (export.generate_graph).

Usage: python -m export --checkpoint artifacts/checkpoint.pt --out-dir artifacts

The command line only: export.pipeline.export_all builds, checks and commits the set (all or
none).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core import contract
from core.atomic import exit_on_sigterm
from export.pipeline import ARTIFACTS, export_all
from model.checkpoint import CheckpointError


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
