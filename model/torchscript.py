"""The TorchScript step file: `forward(char int64 [B], hidden float32 [L, B, H]) -> (logits,
hidden_out)`, with vocab.json inside as a TorchScript extra file and the content checksum
`charrnn.sha256` (core.integrity) that the loader recomputes. Its format's one home, like
model/checkpoint.py's: writing it (export.torchscript scripts and checks it first) and loading it
(the server, the generate commands). No parity check here, so a .mar does not ship one."""

from __future__ import annotations

from pathlib import Path

import torch

from core import integrity, manifest
from core.errors import ArtifactError
from core.vocab import Vocab, VocabError


def save_torchscript(module: torch.jit.ScriptModule, manifest_text: str, path: str | Path) -> None:
    """torch.jit.save with vocab.json and the content checksum inside (saved twice: the checksum
    covers every other member, and a second save writes the same members)."""
    torch.jit.save(module, str(path), _extra_files={manifest.VOCAB_KEY: manifest_text})
    digest, _ = integrity.zip_digest(path)
    torch.jit.save(module, str(path), _extra_files={manifest.VOCAB_KEY: manifest_text, integrity.SEAL_KEY: digest})


def load_torchscript(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.jit.ScriptModule, Vocab, dict]:
    """Load the step and its vocabulary; any corruption is one ArtifactError naming the file
    (checked first: every member's CRC-32 and the sealed content checksum)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: TorchScript file not found")
    integrity.check_torchscript(path)
    extra = {manifest.VOCAB_KEY: ""}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:  # noqa: BLE001 -- torch raises assorted types for damaged files
        raise ArtifactError(f"{path}: not a loadable TorchScript file (truncated or corrupted?): "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    if not extra[manifest.VOCAB_KEY]:
        raise ArtifactError(f"{path}: has no {manifest.VOCAB_KEY} extra file")
    try:
        vocab, meta = manifest.parse(extra[manifest.VOCAB_KEY], str(path))
    except VocabError as exc:
        raise ArtifactError(str(exc)) from None
    return module.eval(), vocab, meta
