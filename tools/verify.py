"""Check that a set of artifacts belongs together: each loads (with its content checksum), and
all carry one fingerprint and one vocabulary.

Usage: python -m tools.verify [--dir artifacts]   (make verify; exit 1 with one line per problem)
       python -m export.verify ...                 (its alias, kept for scripts)

A tool: it reads every artifact the way its users do (the checkpoint with torch, the TorchScript
step, the ONNX files with the runtime's readers), so it sits above all of them.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from core import contract, manifest
from core.errors import ArtifactError
from core.vocab import VocabError
from model.checkpoint import CheckpointError

ARTIFACTS = (contract.CHECKPOINT, *contract.EXPORTS)
VOCAB_FIELDS = ("symbols", "bos_id", "eos_id")  # what a checkpoint carries beside the fingerprint


def _checkpoint(path: Path) -> dict:
    from model.checkpoint import load_checkpoint  # recomputes the weights+vocabulary fingerprint

    _, vocab, ckpt = load_checkpoint(path)
    return {**vocab.to_dict(), "fingerprint": ckpt["fingerprint"]}


def manifests(directory: str | Path) -> tuple[dict[str, dict], list[str]]:
    """vocab.json contents per artifact that loaded, and a message per artifact that did not."""
    from model.torchscript import load_torchscript
    from runtime.greedy import OnnxGreedy
    from runtime.step import OnnxStep

    d = Path(directory)
    found: dict[str, dict] = {}
    problems: list[str] = []
    loaders = {
        contract.CHECKPOINT: _checkpoint,
        contract.VOCAB: lambda p: manifest.parse(p.read_bytes(), str(p))[1],
        contract.TORCHSCRIPT: lambda p: load_torchscript(p)[2],
        contract.ONNX_STEP: lambda p: OnnxStep.from_path(p).meta,
        contract.ONNX_GENERATE: lambda p: OnnxGreedy.from_path(p).meta,
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
    if found:
        # the reference: the first export (else the checkpoint) of the most common fingerprint, so
        # that one file of another training run is the one named
        counts = Counter(meta["fingerprint"] for meta in found.values())
        candidates = [name for name, meta in found.items() if counts[meta["fingerprint"]] == max(counts.values())]
        first = next((n for n in candidates if n != contract.CHECKPOINT), candidates[0])
        for name, meta in found.items():
            # the exports carry the very same vocab.json; a checkpoint only its vocabulary fields
            keys = VOCAB_FIELDS if contract.CHECKPOINT in (name, first) else None
            try:
                manifest.check_same_export(meta, str(d / name), found[first], str(d / first), keys=keys)
            except ArtifactError as exc:
                problems.append(str(exc))
    return found, problems


def fingerprints(directory: str | Path) -> tuple[dict[str, str], list[str]]:
    """Fingerprint per artifact that loaded, and a message per problem."""
    found, problems = manifests(directory)
    return {name: meta["fingerprint"] for name, meta in found.items()}, problems


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=contract.ART_DIR)
    args = p.parse_args(argv)
    found, problems = fingerprints(args.dir)
    if problems:
        raise SystemExit("\n".join(f"error: {m}" for m in problems))
    print(f"ok: {len(found)} artifacts, fingerprint {next(iter(found.values()))}")


if __name__ == "__main__":
    main()
