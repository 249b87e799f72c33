"""Generate names from any backend: the eager checkpoint, the TorchScript step or the ONNX step.

Usage: python -m model.generate --backend onnx --prefix L -n 3 [--temperature 0.8 --seed 7]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from data.vocab import Vocab, VocabError
from export.errors import ArtifactError
from model.checkpoint import CheckpointError
from model.decode import decode
from model.request import DEFAULT_MAX_LENGTH, Row, make_rows

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
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one name at a time: threads only add hand-off latency
    try:
        gen = load_generator(args.backend, args.model, args.device)
        rows = [row for prefix in (args.prefix or [""]) for row in make_rows(
            gen.vocab, prefix, num=args.num, max_length=args.max_length,
            temperature=args.temperature, top_k=args.top_k, seed=args.seed)]
        names = gen.generate_rows(rows)
    except (CheckpointError, ArtifactError, VocabError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print("\n".join(names))


if __name__ == "__main__":
    main()
