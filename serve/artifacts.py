"""The serving side's artifact check: the vocab.json shipped beside the TorchScript step (in
the .mar) must be the vocabulary inside it, or the worker refuses to start."""

from __future__ import annotations

from pathlib import Path

from core import manifest
from core.errors import ArtifactError
from core.vocab import Vocab, VocabError


def check_vocab_file(vocab_json: str | Path, vocab: Vocab, meta: dict, torchscript: str | Path) -> None:
    """Refuse a vocab.json that is not the one inside the TorchScript file (different run)."""
    path = Path(vocab_json)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: cannot read the vocabulary file ({exc})") from None
    try:
        _, file_meta = manifest.parse(text, str(path))
    except VocabError as exc:
        raise ArtifactError(str(exc)) from None
    manifest.check_same_export(file_meta, str(path), meta, f"the vocab.json inside {torchscript}",
                               fix="rebuild the archive (make archive)")
