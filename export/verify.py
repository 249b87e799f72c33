"""Check that a set of artifacts belongs together: each loads, and all carry one fingerprint.

Usage: python -m export.verify [--dir artifacts]   (exit 1 with one line per problem)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data.vocab import VocabError
from export import manifest
from export.errors import ArtifactError
from model.checkpoint import CheckpointError


def fingerprints(directory: str | Path) -> tuple[dict[str, str], list[str]]:
    """Fingerprint per artifact that loaded, and a message per artifact that did not."""
    from export.runtime import OnnxStep
    from export.torchscript import load_torchscript
    from model.checkpoint import read_checkpoint

    d = Path(directory)
    found: dict[str, str] = {}
    problems: list[str] = []
    loaders = {
        "checkpoint.pt": lambda p: read_checkpoint(p)["fingerprint"],
        "vocab.json": lambda p: manifest.parse(p.read_bytes(), str(p))[1]["fingerprint"],
        "charrnn.torchscript.pt": lambda p: load_torchscript(p)[2]["fingerprint"],
        "charrnn.onnx": lambda p: OnnxStep.from_path(p).meta["fingerprint"],
    }
    for name, load in loaders.items():
        path = d / name
        try:
            found[name] = load(path)
        except (CheckpointError, ArtifactError, VocabError, KeyError, OSError, json.JSONDecodeError) as exc:
            problems.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
    if len(set(found.values())) > 1:
        listing = ", ".join(f"{name}={fp}" for name, fp in found.items())
        problems.append(f"{d}: artifacts come from different training runs (fingerprints {listing})")
    return found, problems


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="artifacts")
    args = p.parse_args(argv)
    found, problems = fingerprints(args.dir)
    if problems:
        raise SystemExit("\n".join(f"error: {m}" for m in problems))
    print(f"ok: {len(found)} artifacts, fingerprint {next(iter(found.values()))}")


if __name__ == "__main__":
    main()
