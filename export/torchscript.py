"""The TorchScript step: `forward(char int64 [B], hidden float32 [L, B, H]) -> (logits, hidden_out)`,
with vocab.json inside as a TorchScript extra file, and the content checksum `charrnn.sha256`
(export.integrity) that the loader recomputes."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from data.atomic import atomic_path
from data.vocab import Vocab, VocabError
from export import integrity, manifest
from export.errors import ArtifactError
from export.parity import Parity, check
from model.charrnn import CharRNN
from model.decode import decode


def _script(model: CharRNN) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript; it is still the format TorchServe and C++ load
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(model)


def save_torchscript(module: torch.jit.ScriptModule, manifest_text: str, path: str | Path) -> None:
    """torch.jit.save with vocab.json and the content checksum inside (saved twice: the checksum
    covers every other member, and a second save writes the same members)."""
    torch.jit.save(module, str(path), _extra_files={manifest.VOCAB_KEY: manifest_text})
    digest, _ = integrity.zip_digest(path)
    torch.jit.save(module, str(path), _extra_files={manifest.VOCAB_KEY: manifest_text, integrity.SEAL_KEY: digest})


def export_torchscript(model: CharRNN, vocab: Vocab, manifest_text: str, path: str | Path) -> Parity:
    """Script, reload and compare with eager (export.parity); write `path` only if they agree."""
    model = model.cpu().eval()
    scripted = _script(model)
    with atomic_path(path) as tmp:
        save_torchscript(scripted, manifest_text, tmp)
        reloaded, _, _ = load_torchscript(tmp)

        def run(char, hidden):
            logits, hidden_out = reloaded(char, hidden)
            return logits.numpy(), hidden_out.numpy()

        def names(rows):
            return decode(reloaded, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                          hidden_shape=(model.num_layers, model.hidden_size))

        return check(model, vocab, run, names, f"TorchScript export {path}")


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
