"""vocab.json: the vocabulary and model facts carried by every artifact (torch-free).

Contract (extend, never rename): {"symbols": [...index order...], "bos_id": int, "eos_id": int}.
Added: format_version, cell, hidden_size, num_layers, vocab_size, fingerprint (of weights and
vocabulary: a runtime can tell artifacts of different training runs apart), normalization,
members (how many models the step averages: 1 for a single model; an ensemble's hidden_size is
its members' sizes summed, their states side by side, and cell is theirs, or "mixed").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from core import contract
from core.errors import ArtifactError
from core.vocab import Vocab, VocabError

VOCAB_KEY = contract.VOCAB  # TorchScript extra-file name and ONNX metadata_props key
REEXPORT = "re-export them (make export)"


def build_manifest(vocab: Vocab, *, cell: str, hidden_size: int, num_layers: int, fingerprint: str,
                   members: int = 1) -> dict:
    return {
        **vocab.to_dict(),
        "vocab_size": len(vocab),
        "cell": cell,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "fingerprint": fingerprint,
        "normalization": "NFC",
        "members": members,
    }


def dumps(manifest: dict) -> str:
    return json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def parse(text: str | bytes, source: str) -> tuple[Vocab, dict]:
    """Validate vocab.json text; errors name `source`."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VocabError(f"{source}: vocab.json is not valid JSON ({exc})") from None
    try:
        vocab = Vocab.from_dict(data)
    except VocabError as exc:
        raise VocabError(f"{source}: {exc}") from None
    for key in ("hidden_size", "num_layers"):
        if not isinstance(data.get(key), int) or data[key] < 1:
            raise VocabError(f"{source}: vocab.json field {key!r} must be a positive integer")
    return vocab, data


def check_same_export(meta: Mapping, source: str, reference: Mapping, other: str, *,
                      keys: Iterable[str] | None = None, fix: str = REEXPORT) -> None:
    """The one vocabulary-consistency check: refuse `source` (whose vocab.json is `meta`) unless
    it comes from the same export as `other` (whose vocab.json is `reference`).

    First the fingerprint (of weights and vocabulary): another value means another training run.
    Then, under the same fingerprint, every key of `keys` (default: all of both; every export
    carries the very same vocab.json, a checkpoint only its vocabulary fields): a difference
    means the file was altered. ArtifactError naming both files, what differs, and `fix`."""
    ours, theirs = meta.get("fingerprint"), reference.get("fingerprint")
    if ours != theirs:
        raise ArtifactError(f"{source} is not from the same export as {other} (vocab.json fingerprint {ours} "
                            f"against {theirs}): the artifacts come from different training runs; {fix}")
    names = sorted(set(meta) | set(reference)) if keys is None else list(keys)
    differs = [k for k in names if meta.get(k) != reference.get(k)]
    if differs:
        how = "lists other symbols than" if "symbols" in differs else "differs from"
        raise ArtifactError(f"{source} {how} {other} ({', '.join(differs)}) under the same fingerprint "
                            f"{ours}: the file was altered; {fix}")
