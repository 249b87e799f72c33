"""Export the TorchScript step (format: model.torchscript): script the eager model, write it
with its vocabulary and checksum, reload it and check it against eager (export.parity) before it
may replace the previous file."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from core.atomic import atomic_path
from core.vocab import Vocab
from export.parity import Parity, check
from model.charrnn import CharRNN
from model.decode import decode
from model.ensemble import CharRNNEnsemble
from model.torchscript import load_torchscript, save_torchscript


def _script(model: CharRNN | CharRNNEnsemble) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript; it is still the format TorchServe and C++ load
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(model.as_step())  # the file's forward is the single step


def export_torchscript(model: CharRNN | CharRNNEnsemble, vocab: Vocab, manifest_text: str, path: str | Path) -> Parity:
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
