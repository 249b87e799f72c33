"""The torch generator: the eager checkpoint or the TorchScript step, decoded by the one torch
loop (model.decode.decode, over model.chunked), with the n-best search and scoring (model.nbest).

The command line over every backend (eager, TorchScript, ONNX, a server) is `python -m
tools.generate`: it sits above the ONNX runtime, which this layer must not import.
`python -m model.generate` (documented before) is its alias, with the same flags and defaults:
main() imports the tools, so `from model.generate import TorchGenerator` never loads them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from core.request import DEFAULT_MAX_LENGTH, Row
from core.vocab import Vocab
from model import nbest
from model.decode import decode
from model.nbest_torch import TorchStepper


class TorchGenerator:
    """The eager model or the TorchScript step, decoded by the one torch loop (model.chunked)."""

    def __init__(self, step, vocab: Vocab, hidden_shape: tuple[int, int], device: str = "cpu"):
        self.step, self.vocab, self.hidden_shape, self.device = step, vocab, hidden_shape, device

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu") -> TorchGenerator:
        from model.checkpoint import load_checkpoint

        model, vocab, _ = load_checkpoint(path, device)
        return cls(model.step, vocab, (model.num_layers, model.hidden_size), device)

    @classmethod
    def from_torchscript(cls, path, device: str = "cpu") -> TorchGenerator:
        from model.torchscript import load_torchscript

        module, vocab, meta = load_torchscript(path, device)
        return cls(module, vocab, (meta["num_layers"], meta["hidden_size"]), device)

    def generate_rows(self, rows: Sequence[Row]) -> list[str]:
        ids = decode(self.step, rows, bos_id=self.vocab.bos_id, eos_id=self.vocab.eos_id,
                     hidden_shape=self.hidden_shape, device=self.device)
        return [self.vocab.decode(i) for i in ids]

    @property
    def _stepper(self) -> TorchStepper:
        return TorchStepper(self.step, self.hidden_shape, self.device)

    def nbest(self, prefix: str = "", *, num: int = 5, max_length: int = DEFAULT_MAX_LENGTH,
              max_expansions: int = nbest.DEFAULT_MAX_EXPANSIONS) -> nbest.NBest:
        """The `num` most probable distinct names starting with `prefix` (model.nbest.search)."""
        return nbest.search(self._stepper, self.vocab.encode(unicodedata.normalize("NFC", prefix)), num,
                            max_length=max_length, bos_id=self.vocab.bos_id, eos_id=self.vocab.eos_id,
                            max_expansions=max_expansions)

    def logprobs(self, names: Sequence[str]) -> list[float]:
        """Natural-log probability of each whole name under the model (model.nbest.score)."""
        return nbest.score(self._stepper, [self.vocab.encode(n) for n in names],
                           bos_id=self.vocab.bos_id, eos_id=self.vocab.eos_id)


def main(argv: list[str] | None = None) -> None:
    """`python -m tools.generate` with the caller's flags (the one generate command line)."""
    from tools.generate import main as generate

    generate(argv)


if __name__ == "__main__":
    main()
