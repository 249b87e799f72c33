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
        file_vocab, file_meta = manifest.parse(text, str(path))
    except VocabError as exc:
        raise ArtifactError(str(exc)) from None
    ours, theirs = file_meta.get("fingerprint"), meta.get("fingerprint")
    if ours != theirs:
        raise ArtifactError(f"{path} (fingerprint {ours}) does not match the vocabulary inside "
                            f"{torchscript} (fingerprint {theirs}): the artifacts come from "
                            "different training runs; rebuild the archive (make archive)")
    if file_vocab != vocab:
        raise ArtifactError(f"{path} lists other symbols than the vocabulary inside {torchscript} "
                            f"under the same fingerprint {ours}: the file was altered; rebuild the "
                            "archive (make archive)")
    differs = sorted(k for k in set(file_meta) | set(meta) if file_meta.get(k) != meta.get(k))
    if differs:  # the export writes the same vocab.json beside and inside the TorchScript file
        raise ArtifactError(f"{path} differs from the vocab.json inside {torchscript} in "
                            f"{', '.join(differs)}: the file was altered; rebuild the archive (make archive)")
