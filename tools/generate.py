"""Generate names from any backend: the eager checkpoint, the TorchScript step or the ONNX step.

Usage: python -m tools.generate --backend onnx --prefix L -n 3 [--temperature 0.8 --seed 7]

A tool above both the torch model (model.generate.TorchGenerator) and the torch-free ONNX runtime
(export.runtime.NameGenerator), so that neither has to import the other's layer.
"""

from __future__ import annotations

import argparse

import torch

from core.errors import ArtifactError
from core.request import DEFAULT_MAX_LENGTH
from core.vocab import VocabError
from export.runtime import NameGenerator
from model import nbest
from model.checkpoint import CheckpointError
from model.generate import TorchGenerator

BACKENDS = ("eager", "torchscript", "onnx")
DEFAULT_PATHS = {"eager": "artifacts/checkpoint.pt", "torchscript": "artifacts/charrnn.torchscript.pt",
                 "onnx": "artifacts/charrnn.onnx"}


def load_generator(backend: str, path: str | None = None, device: str = "cpu"):
    """A generator with `.vocab` and `.generate_rows(rows)` for `backend`."""
    path = path or DEFAULT_PATHS[backend]
    if backend == "eager":
        return TorchGenerator.from_checkpoint(path, device)
    if backend == "torchscript":
        return TorchGenerator.from_torchscript(path, device)
    if backend == "onnx":
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
