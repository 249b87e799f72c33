"""The model card's machine-readable part (torch-free): the YAML front matter that opens
model_card.md (Hugging Face's convention), and the check that a card describes a given export.

evaluation.card writes the card; serve.archive and web.build ship it, and call `check_card` first
so that a card of another training run never travels with these weights.
"""

from __future__ import annotations

from pathlib import Path

from core import contract
from core.errors import ArtifactError

FENCE = "---"
FINGERPRINT = "fingerprint"  # the front matter's key for the model's fingerprint (as in vocab.json)
REWRITE = "rewrite it (make card, or make eval)"


def split_front_matter(text: str) -> tuple[str, str]:
    """(YAML text, Markdown body) of a card; ValueError when it does not open with front matter."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != FENCE:
        raise ValueError(f"it does not open with YAML front matter ('{FENCE}' on the first line)")
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == FENCE:
            return "\n".join(lines[1:i]), "\n".join(lines[i + 1:])
    raise ValueError(f"its front matter is not closed ('{FENCE}')")


def front_matter(text: str) -> dict:
    """The card's front matter as a dict; ValueError names what is wrong."""
    import yaml

    raw, _ = split_front_matter(text)
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ValueError(f"its front matter is not valid YAML ({exc})") from None
    if not isinstance(data, dict):  # a ValueError like the rest: one kind of "not a card" for callers
        raise ValueError("its front matter is not a mapping")  # noqa: TRY004
    return data


def check_card(path: str | Path, fingerprint: str) -> None:
    """Refuse `path` unless it is a model card of the model with `fingerprint` (ArtifactError
    naming the file and what differs)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no model card ({contract.MODEL_CARD}): write it with make card (or make eval)")
    try:
        meta = front_matter(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not a model card: {exc}; {REWRITE}") from None
    found = meta.get(FINGERPRINT)
    if found != fingerprint:
        raise ArtifactError(f"{path} describes another model (fingerprint {found}, the export's {fingerprint}): "
                            f"a card of a different training run; {REWRITE}")
