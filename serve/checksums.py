"""checksums.json of a TorchServe archive: the SHA-256 of every file the worker runs or loads.

`serve/archive.py` writes it into each .mar; the handler verifies it in `initialize` (before
loading anything), so a damaged or edited archive (a flipped byte in the TorchScript file, a
swapped vocabulary, an edited module) makes the worker refuse to start instead of serving wrong
names. Torch-free (hashlib and json only).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from core.errors import ArtifactError

CHECKSUMS = "checksums.json"
FORMAT = "charrnn-archive-checksums"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(root: str | Path, names: Iterable[str]) -> str:
    """checksums.json text for the files `names` (relative to `root`, as in the model dir)."""
    root = Path(root)
    files = {name: sha256_file(root / name) for name in sorted(set(names))}
    return json.dumps({"format": FORMAT, "files": files}, indent=1, sort_keys=True) + "\n"


def verify(model_dir: str | Path, label: str = "archive", *, required: bool = False) -> int:
    """Check every file listed in <model_dir>/checksums.json; returns how many were checked
    (0 when the file is absent and not `required`). ArtifactError names the archive and file."""
    model_dir = Path(model_dir)
    path = model_dir / CHECKSUMS
    if not path.is_file():
        if required:
            raise ArtifactError(f"{label}: no {CHECKSUMS} (built by an older `make archive`?): rebuild "
                                "the archive (make archive)")
        return 0
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if data.get("format") != FORMAT or not isinstance(files, dict) or not files:
            raise ValueError("unexpected content")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{label}: {CHECKSUMS} is damaged ({exc}): rebuild the archive (make archive)") from None
    for name, expected in sorted(files.items()):
        file = model_dir / name
        if not file.is_file():
            raise ArtifactError(f"{label}: {name} is missing: the archive is damaged; rebuild it (make archive)")
        actual = sha256_file(file)
        if actual != expected:
            raise ArtifactError(f"{label}: {name}: checksum mismatch (sha256 {actual[:16]}..., expected "
                                f"{str(expected)[:16]}...): the archive is corrupted or was altered; "
                                "rebuild it (make archive)")
    return len(files)
