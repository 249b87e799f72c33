"""The Bulk section of `make bench`: names/s of bulk generation to a file (model.names, what
`make names` runs), beside the per-step loop it replaces, in the same run.

Both sides write the same names (row i seeded row_seed(seed, i), T=1) to a file:
- bulk: model.chunked.ChunkedDecoder (eager on CPU: ended rows dropped between chunks) and
  model.batch.NameText, through model.names.write_names, in 1 process and in one process per
  usable core (--workers);
- the per-row API: model.decode.decode over the same rows (the same loop over the TorchScript
  step, every row at every step), Vocab.decode per name, one write.
The figure is the median of `repeats` runs with min and max; the target (issue 14) is
>= 100,000 names/s on the 2-core CPU machine. Each bulk figure is also set against the physical
limit of the model size (tools.limits): FLOPs and bytes per row and step, at the names' measured
steps, against one core's measured FP32 matmul rate (times the processes) and copy bandwidth.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from bench.common import fmt, summary
from core import contract
from core.request import make_rows
from model.decode import decode
from model.names import (
    BATCH,
    BulkSpec,
    _worker_batch,
    bulk_decoder,
    load_step,
    worker_pool,
    worker_texts,
    write_names,
)
from model.torchscript import load_torchscript
from tools.limits import limit_lines, measured_peaks, model_cost
from tools.tables import table

TARGET = 100_000  # names/s, bulk to a file on the 2-core CPU machine


def measure(art_dir: str, *, num: int = 200_000, repeats: int = 3, batch: int = BATCH["cpu"],
            loop_num: int = 20_000, workers: int | None = None) -> dict:
    """Bulk names/s with 1 process and with `workers` processes (default: the usable cores),
    one torch thread each (what `make names` does), and the per-step loop's, 1 thread."""
    workers = workers or len(os.sched_getaffinity(0))
    model = str(Path(art_dir) / contract.TORCHSCRIPT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        step, vocab, hidden_shape = load_step(model, "cpu")
        spec = BulkSpec(num, temperature=1.0, seed=7)
        decoder = bulk_decoder(step, vocab, hidden_shape, spec, "cpu", batch)
        rates: dict[str, list[float]] = {"bulk_1": [], f"bulk_{workers}": [], "loop": []}
        with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp, \
                worker_pool(workers, model, spec, batch) as pool:
            out = Path(tmp) / "names.txt"
            pool.map(_worker_batch, [(0, 1)] * workers)  # each worker loaded before the clock starts
            files = set()
            for _ in range(repeats):
                for key in ("bulk_1", f"bulk_{workers}"):
                    texts = worker_texts(pool, spec, batch) if key != "bulk_1" else None
                    started = time.perf_counter()
                    write_names(out, decoder, vocab, spec, batch_size=batch, texts=texts)
                    rates[key].append(num / (time.perf_counter() - started))
                    files.add(out.read_bytes())
            head = out.read_text(encoding="utf-8").split("\n")[:loop_num]
            same = len(files) == 1
            for _ in range(repeats):
                started = time.perf_counter()
                names, rows = [], make_rows(vocab, "", num=loop_num, temperature=1.0, seed=7)
                for lo in range(0, loop_num, batch):
                    ids = decode(step, rows[lo:lo + batch], bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                                 hidden_shape=hidden_shape)
                    names.extend(vocab.decode(i) for i in ids)
                (Path(tmp) / "loop.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
                rates["loop"].append(loop_num / (time.perf_counter() - started))
                same &= names == head
        steps = sum(min(len(n) + 1, spec.max_length) for n in head) / len(head)
        module = load_torchscript(model)[0]
        cost = {k: model_cost(module, hidden_shape, len(vocab), k == "sampled") for k in ("greedy", "sampled")}
        peaks = measured_peaks(torch.device("cpu"), seconds=0.3)  # one core: one thread
    finally:
        torch.set_num_threads(threads)
    return {"num": num, "loop_num": loop_num, "batch": batch, "workers": workers,
            "names_per_s": {k: summary(v) for k, v in rates.items()}, "same_names": same, "target_names_per_s": TARGET,
            "load_average": os.getloadavg()[0],
            "limit": {"steps_per_name": steps, "flops_per_step": cost["sampled"]["flops"],
                      "bytes_per_step": cost["sampled"]["bytes"], "core_flops": peaks["flops"],
                      "copy_bytes": peaks["bytes"], "cost": cost}}


def markdown(r: dict) -> str:
    w, rates = r["workers"], r["names_per_s"]
    best = max(rates["bulk_1"]["median"], rates[f"bulk_{w}"]["median"])
    met = "met" if best >= r["target_names_per_s"] else "**missed**"
    rows = [["bulk, 1 process (`make names`)", f"{r['num']:,}", fmt(rates["bulk_1"])],
            [f"bulk, {w} processes (`make names WORKERS={w}`)", f"{r['num']:,}",
             fmt(rates[f"bulk_{w}"])],
            ["per-row API, 1 process (model.decode + Vocab.decode)", f"{r['loop_num']:,}", fmt(rates["loop"])]]
    lim = r["limit"]
    lines = []
    for key, cores in (("bulk_1", 1), (f"bulk_{w}", w)):
        peaks = {"flops": cores * lim["core_flops"], "bytes": lim["copy_bytes"]}
        lines += limit_lines({f"bulk, {cores} process(es)": (rates[key]["median"], True, lim["steps_per_name"])},
                             lim["cost"], peaks)
    return (table(["path (T=1, seed 7, to a file; 1 torch thread per process)", "names", "names/s"], rows) + "\n\n"
            f"Batches of {r['batch']:,} rows; bulk (1 process) / loop = "
            f"{rates['bulk_1']['median'] / rates['loop']['median']:.1f}×; every file the same and the same names "
            f"on both paths: {'yes' if r['same_names'] else '**NO**'}; target >= {r['target_names_per_s']:,} "
            f"names/s: {met} ({best:,.0f}); load average {r['load_average']:.1f} (other jobs share the cores).\n\n"
            f"Physical limit: {lim['flops_per_step']:,} FLOPs and >= {lim['bytes_per_step']:,} bytes per row and "
            f"step, {lim['steps_per_name']:.2f} steps a name (its characters and the end token); one core's "
            f"measured FP32 matmul rate {lim['core_flops'] / 1e9:,.0f} GFLOP/s (times the processes), copy "
            f"bandwidth {lim['copy_bytes'] / 1e9:,.0f} GB/s:\n\n```\n" + "\n".join(lines) + "\n```")
