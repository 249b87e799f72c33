"""vocab.json: the vocabulary and model facts carried by every artifact (torch-free).

Contract (extend, never rename): {"symbols": [...index order...], "bos_id": int, "eos_id": int}.
Added: format_version, cell, hidden_size, num_layers, vocab_size, fingerprint (of weights and
vocabulary: a runtime can tell artifacts of different training runs apart), normalization.
"""

from __future__ import annotations

import json

from core.vocab import Vocab, VocabError

VOCAB_KEY = "vocab.json"  # TorchScript extra-file name and ONNX metadata_props key


def build_manifest(vocab: Vocab, *, cell: str, hidden_size: int, num_layers: int, fingerprint: str) -> dict:
    return {
        **vocab.to_dict(),
        "vocab_size": len(vocab),
        "cell": cell,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "fingerprint": fingerprint,
        "normalization": "NFC",
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
