"""Bulk generation: many names straight to a file (synthetic data sets), on CPU or GPU.

Usage: python -m model.names --num 1000000 --out names.txt [--device cuda] [--temperature 1
       --seed 7 --prefix Ma --top-k 0 --max-length 24] [--distinct] [--batch-size N] [--workers 2]

Line i of the file is the name `python -m tools.generate --seed SEED --temperature T` gives as
its i-th name: row i is seeded row_seed(SEED, i) (core.noise), never from a random generator's
state, so the file is the same for the same arguments whatever the batch size, workers, device or
machine (the GPU computes the same names as the CPU; `make gpu-check` checks it), except for a
name that meets a near-tie of two scores, which kernels may round either way (docs/numerics.md).
The same arguments on the same machine give the same bytes. Batches run
through model.chunked.ChunkedDecoder (CUDA graphs on a GPU) and model.batch.NameText; the file
is written atomically (core.atomic): a failed or interrupted run leaves the previous file.

--distinct keeps the first occurrence of each name, in row order, until NUM distinct names are
found; it gives up with an error after --max-draws rows (default 20 x NUM). Greedy decoding
(temperature 0) gives every row the same name, so it is refused for NUM > 1.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from core import contract
from core.atomic import atomic_path, exit_on_sigterm
from core.noise import MAX_SEED
from core.request import DEFAULT_MAX_LENGTH
from core.vocab import Vocab, VocabError
from model.batch import NameText, RowBatch
from model.chunked import SAMPLE, TOP_K, ChunkedDecoder
from model.table_step import TableStep

DEFAULT_MODEL = contract.default_path(contract.TORCHSCRIPT)
BATCH = {"cpu": 4096, "cuda": 65536}  # rows per run: cache-sized on CPU, the largest bucket on a GPU
DRAWS_PER_NAME = 20  # --distinct gives up after this many rows per requested name


@dataclass(frozen=True)
class BulkSpec:
    num: int
    prefix: str = ""
    temperature: float = 1.0
    top_k: int = 0
    seed: int = 0
    max_length: int = DEFAULT_MAX_LENGTH
    distinct: bool = False
    max_draws: int | None = None  # --distinct only; default DRAWS_PER_NAME * num

    def check(self, vocab: Vocab) -> list[int]:
        """The prefix's ids, or a ValueError naming what is wrong."""
        if self.num < 1:
            raise ValueError(f"--num must be >= 1, got {self.num}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"--temperature must be a finite number >= 0, got {self.temperature}")
        if self.temperature == 0 and self.num > 1:
            raise ValueError("--temperature 0 (greedy) gives every row the same name: use a temperature > 0 "
                             "for more than one name")
        if self.top_k < 0:
            raise ValueError(f"--top-k must be >= 0, got {self.top_k}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"--seed must be in [0, {MAX_SEED}], got {self.seed}")
        if self.max_draws is not None and self.max_draws < self.num:
            raise ValueError(f"--max-draws ({self.max_draws}) must be >= --num ({self.num})")
        ids = vocab.encode(unicodedata.normalize("NFC", self.prefix))
        if self.max_length < max(1, len(ids)):
            raise ValueError(f"--max-length {self.max_length} is shorter than the prefix ({len(ids)}) or < 1")
        return ids


class DistinctError(ValueError):
    """The model did not give NUM distinct names within the draw budget."""


def bulk_decoder(step, vocab: Vocab, hidden_shape: tuple[int, int], spec: BulkSpec, device: str,
                 batch_size: int) -> ChunkedDecoder:
    """A decoder sized for the run, with its graphs captured (on CUDA) before the first batch."""
    prefix = len(vocab.encode(unicodedata.normalize("NFC", spec.prefix)))
    decoder = ChunkedDecoder(step, bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=hidden_shape,
                             device=device, buckets=(batch_size,), max_steps=spec.max_length, max_prefix=prefix)
    mode = TOP_K if 0 < spec.top_k < decoder.vocab_size else SAMPLE
    decoder.warm_up([batch_size], modes=[mode])
    return decoder


def batches(spec: BulkSpec, batch_size: int) -> Iterator[tuple[int, int]]:
    """(first row, rows) of each batch, in order: NUM rows, or up to the draw budget (--distinct)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    end = (spec.max_draws or DRAWS_PER_NAME * spec.num) if spec.distinct else spec.num
    for first in range(0, end, batch_size):
        yield first, batch_size if spec.distinct else min(batch_size, end - first)


def batch_text(decoder: ChunkedDecoder, name_text: NameText, prefix_ids: list[int], spec: BulkSpec,
               first: int, n: int) -> str:
    """Rows first..first+n-1 decoded, one name a line."""
    rows = RowBatch.from_groups([prefix_ids], [n], [spec.max_length], [spec.temperature], [spec.top_k],
                                [spec.seed], first_index=first)
    return name_text.text(decoder.run(rows).ids)


def write_names(path: str | Path, decoder: ChunkedDecoder | None, vocab: Vocab, spec: BulkSpec, *,
                batch_size: int, progress: Callable[[int], None] | None = None,
                texts: Iterable[str] | None = None) -> int:
    """Write spec.num names (one a line) to `path` atomically; returns the rows decoded.
    Rows are decoded in order, batch_size at a time; row i is seeded row_seed(spec.seed, i).
    texts: the batches' texts in `batches` order, decoded elsewhere (worker processes);
    default: decoded here by `decoder`."""
    prefix_ids = spec.check(vocab)
    plan = batches(spec, batch_size)
    if texts is None:
        name_text = NameText(vocab)
        texts = (batch_text(decoder, name_text, prefix_ids, spec, first, n) for first, n in plan)
        plan = batches(spec, batch_size)
    written = drawn = 0
    seen: set[str] = set()
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for (_, n), text in zip(plan, texts):
            drawn += n
            if spec.distinct:
                new = []
                for name in text.split("\n")[:-1]:
                    if name not in seen:
                        seen.add(name)
                        new.append(name)
                        if written + len(new) == spec.num:
                            break
                text = "".join(name + "\n" for name in new)
                n = len(new)
            fh.write(text)
            written += n
            if progress is not None:
                progress(n)
            if written >= spec.num:
                break
        if written < spec.num:
            raise DistinctError(
                f"only {written} distinct names in {drawn} drawn (the limit, --max-draws "
                f"{spec.max_draws or DRAWS_PER_NAME * spec.num}); "
                f"the model cannot give {spec.num} distinct names with prefix {spec.prefix!r}, temperature "
                f"{spec.temperature:g}, top-k {spec.top_k}, max length {spec.max_length}: ask for fewer, "
                "raise the temperature or the max length")
    return drawn


_WORKER: tuple | None = None  # a worker process's decoder, set up once by _worker_start


def _worker_start(model: str, spec: BulkSpec, batch_size: int) -> None:
    global _WORKER
    # a forked worker inherits the command's SIGTERM handler (core.atomic.exit_on_sigterm), which
    # is for the parent's temporary file; the pool's terminate must end a worker at once
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)  # one core per worker: small ops do not pay for intra-op threads
    step, vocab, hidden_shape = load_step(model, "cpu")
    _WORKER = (bulk_decoder(step, vocab, hidden_shape, spec, "cpu", batch_size), NameText(vocab),
               spec.check(vocab), spec)


def _worker_batch(first_n: tuple[int, int]) -> str:
    decoder, name_text, prefix_ids, spec = _WORKER
    return batch_text(decoder, name_text, prefix_ids, spec, *first_n)


def worker_pool(workers: int, model: str, spec: BulkSpec, batch_size: int):
    """A pool of `workers` processes, each with its own decoder (_worker_start). Forked where the
    platform can (a child then starts with torch already imported, as torch's DataLoader workers
    do: each sets one intra-op thread before any operator runs); spawned elsewhere."""
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method).Pool(workers, _worker_start, (model, spec, batch_size))


def worker_texts(pool, spec: BulkSpec, batch_size: int) -> Iterator[str]:
    """The batches' texts from a pool of worker processes (each its own decoder), in order."""
    return pool.imap(_worker_batch, batches(spec, batch_size))


class _NoBar:
    def update(self, n: int) -> None:
        pass


def progress_bar(total: int, disabled: bool):
    """tqdm's bar of names written, on stderr; none where tqdm is not installed (a GPU machine
    with PyTorch alone runs `make names DEVICE=cuda` as it is)."""
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:
        return contextlib.nullcontext(_NoBar())
    return tqdm(total=total, unit=" names", unit_scale=True, disable=disabled, file=sys.stderr, smoothing=0.1)


def load_step(model: str, device: str):
    """(step, vocab, hidden_shape) from a TorchScript export or a training checkpoint; the step
    is model.table_step.TableStep where the cell allows (the same values, fewer operators)."""
    if str(model).endswith(contract.TORCHSCRIPT_SUFFIX):
        from model.torchscript import load_torchscript

        module, vocab, meta = load_torchscript(model, device)
        step, hidden_shape = module, (meta["num_layers"], meta["hidden_size"])
    else:
        from model.checkpoint import load_checkpoint

        module, vocab, _ = load_checkpoint(model, device)
        step, hidden_shape = module.step, (module.num_layers, module.hidden_size)
    return TableStep.of(module) or step, vocab, hidden_shape


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    p = argparse.ArgumentParser(description="Generate many names straight to a file (see the module docstring).")
    p.add_argument("--num", type=int, required=True, help="names to write")
    p.add_argument("--out", required=True, help="output file (replaced atomically)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"a *{contract.TORCHSCRIPT_SUFFIX} export or a training checkpoint")
    p.add_argument("--device", default="cpu", help="cpu or cuda (CUDA graphs)")
    p.add_argument("--prefix", default="", help="start of every name")
    p.add_argument("--temperature", type=float, default=1.0, help="> 0 (0 = greedy: one name only)")
    p.add_argument("--top-k", type=int, default=0, help="0 = all symbols")
    p.add_argument("--seed", type=int, default=0, help=f"0..{MAX_SEED}; the same seed gives the same file")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="characters, prefix included")
    p.add_argument("--distinct", action="store_true", help="no name twice (first occurrences, in row order)")
    p.add_argument("--max-draws", type=int, default=None,
                   help=f"--distinct: give up after this many rows (default {DRAWS_PER_NAME} x NUM)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"rows per run (default {BATCH['cpu']} on CPU, {BATCH['cuda']} on CUDA); does not change the file")
    p.add_argument("--workers", type=int, default=None,
                   help="CPU only: processes decoding batches in parallel, one core each (default: the usable "
                        "cores, at most one per batch; 1 = no worker processes)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of the one process (default 1 on CPU: steps this small gain nothing from intra-op threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    spec = BulkSpec(args.num, args.prefix, args.temperature, args.top_k, args.seed, args.max_length,
                    args.distinct, args.max_draws)
    from core.errors import ArtifactError
    from model.checkpoint import CheckpointError

    cpu = not args.device.startswith("cuda")
    if args.threads or cpu:
        torch.set_num_threads(args.threads or 1)
    try:
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: CUDA is not available here")
        if not Path(args.model).is_file():
            raise ValueError(f"--model {args.model}: no such file (make export builds it)")
        step, vocab, hidden_shape = load_step(args.model, args.device)
        spec.check(vocab)
        batch_size = args.batch_size if args.batch_size is not None else \
            BATCH["cuda" if args.device.startswith("cuda") else "cpu"]
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        batch_size = batch_size if args.distinct else min(batch_size, args.num)
        if args.workers is None:
            args.workers = min(len(os.sched_getaffinity(0)), -(-args.num // batch_size)) if cpu else 1
        if args.workers < 1 or (args.workers > 1 and not cpu):
            raise ValueError(f"--workers must be >= 1 (and 1 with --device {args.device}), got {args.workers}")
        started = time.perf_counter()
        with contextlib.ExitStack() as stack:
            # the workers first: forked before the progress bar starts its monitor thread
            pool = stack.enter_context(worker_pool(args.workers, args.model, spec, batch_size)) \
                if args.workers > 1 else None
            bar = stack.enter_context(progress_bar(args.num, args.no_progress))
            if pool is not None:
                drawn = write_names(args.out, None, vocab, spec, batch_size=batch_size, progress=bar.update,
                                    texts=worker_texts(pool, spec, batch_size))
                # workers end on the pool's sentinels; Pool.__exit__'s terminate (SIGTERM to workers
                # waiting on the task queue's lock, which the pool's teardown takes) is left for errors
                pool.close()
                pool.join()
            else:
                decoder = bulk_decoder(step, vocab, hidden_shape, spec, args.device, batch_size)
                drawn = write_names(args.out, decoder, vocab, spec, batch_size=batch_size, progress=bar.update)
        elapsed = time.perf_counter() - started
    except (CheckpointError, ArtifactError, VocabError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    extra = f" ({drawn} drawn)" if args.distinct else ""
    print(f"wrote {args.num} names{extra} to {args.out} in {elapsed:.2f} s: {args.num / elapsed:,.0f} names/s "
          f"on {args.device}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
