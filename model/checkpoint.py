"""The checkpoint format: a plain dict that loads with torch.load(..., weights_only=True).

{
  "format": "charrnn-checkpoint", "format_version": 1,
  "config": ModelConfig as dict (an ensemble's: {"members": [ModelConfig as dict, ...]}),
  "vocab": Vocab as dict,
  "state_dict": {name: tensor}, "fingerprint": str,
  "metrics": {...}, "history": [{...per epoch...}], "train_args": {...}
}
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path

import torch

from core.atomic import atomic_path, pause_point
from core.errors import ArtifactError
from core.integrity import check_zip
from core.vocab import Vocab, VocabError
from model.charrnn import CharRNN
from model.ensemble import CharRNNEnsemble, build_model, config_from_dict

FORMAT = "charrnn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def model_fingerprint(model: CharRNN | CharRNNEnsemble, vocab: Vocab) -> str:
    """Identify a (weights, vocabulary) pair, so exports from different runs cannot be mixed."""
    digest = hashlib.sha256(json.dumps(vocab.symbols, ensure_ascii=False).encode())
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_checkpoint(path: str | Path, model: CharRNN | CharRNNEnsemble, vocab: Vocab, *, metrics: dict | None = None,
                    history: list[dict] | None = None, train_args: dict | None = None) -> dict:
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "vocab": vocab.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "fingerprint": model_fingerprint(model, vocab),
        "metrics": metrics or {},
        "history": history or [],
        "train_args": train_args or {},
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
        pause_point("checkpoint")  # tests signal here: written, not yet renamed over the old one
    return ckpt


def read_checkpoint(path: str | Path) -> dict:
    """Load the raw dict, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    # torch.save writes a zip archive; anything else is damaged (or a foreign pickle, refused too)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted: not a zip archive)")
    try:  # every member's CRC-32: torch.load itself does not check them
        check_zip(path)
    except ArtifactError as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint: {str(exc).removeprefix(f'{path}: ')}") from None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line),
                      "unsupported content")
        raise CheckpointError(f"{path}: refused: the checkpoint holds objects other than tensors and plain data "
                              f"({reason})") from None
    except Exception as exc:  # noqa: BLE001 -- damaged data makes torch raise assorted types
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted?): "
                              f"{_first_line(exc)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a CharRNN checkpoint (missing format marker {FORMAT!r})")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format_version {ckpt.get('format_version')!r}")
    for key in ("config", "vocab", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint field {key!r} is missing or not a dict")
    return ckpt


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[CharRNN | CharRNNEnsemble, Vocab, dict]:
    """Return (model in eval mode: a CharRNN, or a CharRNNEnsemble for an ensemble's checkpoint,
    vocabulary, the raw checkpoint dict)."""
    ckpt = read_checkpoint(path)
    try:
        vocab = Vocab.from_dict(ckpt["vocab"])
        config = config_from_dict(ckpt["config"])
    except (VocabError, TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: bad config or vocabulary: {exc}") from None
    if config.vocab_size != len(vocab):
        raise CheckpointError(f"{path}: config vocab_size {config.vocab_size} != {len(vocab)} vocabulary symbols")
    model = build_model(config)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model config: {_first_line(exc)}") from None
    expected = ckpt.get("fingerprint")
    if expected is not None and expected != model_fingerprint(model, vocab):
        raise CheckpointError(f"{path}: fingerprint mismatch: the weights or vocabulary were altered")
    return model.to(device).eval(), vocab, ckpt
