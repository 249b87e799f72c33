"""Generate names from any backend: the eager checkpoint, the TorchScript step or the ONNX step.

Usage: python -m model.generate --backend onnx --prefix L -n 3 [--temperature 0.8 --seed 7]
"""

from __future__ import annotations

import argparse
import unicodedata
from collections.abc import Sequence

import torch

from data.vocab import Vocab, VocabError
from export.errors import ArtifactError
from model import nbest
from model.checkpoint import CheckpointError
from model.decode import decode
from model.nbest_torch import TorchStepper
from model.request import DEFAULT_MAX_LENGTH, Row

BACKENDS = ("eager", "torchscript", "onnx")
DEFAULT_PATHS = {"eager": "artifacts/checkpoint.pt", "torchscript": "artifacts/charrnn.torchscript.pt",
                 "onnx": "artifacts/charrnn.onnx"}


class TorchGenerator:
    """The eager model or the TorchScript step, decoded by the one torch loop (model.decode)."""

    def __init__(self, step, vocab: Vocab, hidden_shape: tuple[int, int], device: str = "cpu"):
        self.step, self.vocab, self.hidden_shape, self.device = step, vocab, hidden_shape, device

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu") -> TorchGenerator:
        from model.checkpoint import load_checkpoint

        model, vocab, _ = load_checkpoint(path, device)
        return cls(model, vocab, (model.num_layers, model.hidden_size), device)

    @classmethod
    def from_torchscript(cls, path, device: str = "cpu") -> TorchGenerator:
        from export.torchscript import load_torchscript

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


def load_generator(backend: str, path: str | None = None, device: str = "cpu"):
    """A generator with `.vocab` and `.generate_rows(rows)` for `backend`."""
    path = path or DEFAULT_PATHS[backend]
    if backend == "eager":
        return TorchGenerator.from_checkpoint(path, device)
    if backend == "torchscript":
        return TorchGenerator.from_torchscript(path, device)
    if backend == "onnx":
        from export.runtime import NameGenerator

        return NameGenerator(path)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Generate names with the eager, TorchScript or ONNX backend.")
    p.add_argument("--backend", choices=BACKENDS, default="eager")
    p.add_argument("--model", default=None, help="artifact path (default: the backend's file in artifacts/)")
    p.add_argument("--prefix", action="append", default=None, help="start of the name; repeat for several")
    p.add_argument("-n", "--num", type=int, default=1, help="names per prefix")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="cpu", help="torch backends only: cpu or cuda")
    nbest.add_search_arguments(p)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one name at a time: threads only add hand-off latency
    try:
        gen = load_generator(args.backend, args.model, args.device)
        answers = nbest.ranked(gen, args.prefix or [""], num=args.num, max_length=args.max_length,
                         temperature=args.temperature, top_k=args.top_k, seed=args.seed, search=args.search,
                         max_expansions=args.max_expansions, scores=args.logprobs)
    except (CheckpointError, ArtifactError, VocabError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    nbest.print_ranked(answers, args.logprobs)


if __name__ == "__main__":
    main()
