"""Check that a set of artifacts belongs together: each loads (with its content checksum), and
all carry one fingerprint and one vocabulary.

Usage: python -m export.verify [--dir artifacts]   (exit 1 with one line per problem)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core import manifest
from core.errors import ArtifactError
from core.vocab import VocabError
from model.checkpoint import CheckpointError

ARTIFACTS = ("checkpoint.pt", "vocab.json", "charrnn.torchscript.pt", "charrnn.onnx", "charrnn_generate.onnx")
VOCAB_FIELDS = ("symbols", "bos_id", "eos_id")  # what must be equal beside the fingerprint


def _checkpoint(path: Path) -> dict:
    from model.checkpoint import load_checkpoint  # recomputes the weights+vocabulary fingerprint

    _, vocab, ckpt = load_checkpoint(path)
    return {**vocab.to_dict(), "fingerprint": ckpt["fingerprint"]}


def manifests(directory: str | Path) -> tuple[dict[str, dict], list[str]]:
    """vocab.json contents per artifact that loaded, and a message per artifact that did not."""
    from export.runtime import OnnxGreedy, OnnxStep
    from model.torchscript import load_torchscript

    d = Path(directory)
    found: dict[str, dict] = {}
    problems: list[str] = []
    loaders = {
        "checkpoint.pt": _checkpoint,
        "vocab.json": lambda p: manifest.parse(p.read_bytes(), str(p))[1],
        "charrnn.torchscript.pt": lambda p: load_torchscript(p)[2],
        "charrnn.onnx": lambda p: OnnxStep.from_path(p).meta,
        "charrnn_generate.onnx": lambda p: OnnxGreedy.from_path(p).meta,
    }
    for name in ARTIFACTS:
        path = d / name
        try:
            meta = loaders[name](path)
            if "fingerprint" not in meta:
                raise ArtifactError(f"{path}: its vocab.json has no 'fingerprint'")
            found[name] = meta
        except (CheckpointError, ArtifactError, VocabError, KeyError, OSError, json.JSONDecodeError) as exc:
            problems.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
    fingerprints_seen = {name: meta["fingerprint"] for name, meta in found.items()}
    if len(set(fingerprints_seen.values())) > 1:
        listing = ", ".join(f"{name}={fp}" for name, fp in fingerprints_seen.items())
        problems.append(f"{d}: artifacts come from different training runs (fingerprints {listing})")
    elif found:
        # the exports carry the very same vocab.json; the checkpoint only its vocabulary fields
        exports = [(name, meta) for name, meta in found.items() if name != "checkpoint.pt"]
        first, reference = exports[0] if exports else next(iter(found.items()))
        for name, meta in found.items():
            keys = VOCAB_FIELDS if "checkpoint.pt" in (name, first) else sorted(set(meta) | set(reference))
            differs = [k for k in keys if meta.get(k) != reference.get(k)]
            if differs:
                problems.append(f"{d / name}: its vocab.json differs from {first}'s ({', '.join(differs)}) "
                                f"under the same fingerprint: the file was altered")
    return found, problems


def fingerprints(directory: str | Path) -> tuple[dict[str, str], list[str]]:
    """Fingerprint per artifact that loaded, and a message per problem."""
    found, problems = manifests(directory)
    return {name: meta["fingerprint"] for name, meta in found.items()}, problems


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
