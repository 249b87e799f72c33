"""The Bulk section of `make bench`: names/s of bulk generation to a file (model.names, what
`make names` runs), beside the per-step loop it replaces, in the same run.

Both sides write the same names (row i seeded row_seed(seed, i), T=1) to a file:
- bulk: model.chunked.ChunkedDecoder (eager on CPU: ended rows dropped between chunks) and
  model.batch.NameText, through model.names.write_names;
- per-step loop: model.decode.decode over the same rows, Vocab.decode per name, one write.
The figure is the median of `repeats` runs with min and max; the target (issue 14) is
>= 100,000 names/s on the 2-core CPU machine.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from bench.common import fmt, summary, table
from model.decode import decode
from model.names import BATCH, BulkSpec, bulk_decoder, load_step, write_names
from model.request import make_rows

TARGET = 100_000  # names/s, bulk to a file on the 2-core CPU machine


def measure(art_dir: str, *, num: int = 200_000, repeats: int = 3, batch: int = BATCH["cpu"],
            loop_num: int = 20_000) -> dict:
    model = str(Path(art_dir) / "charrnn.torchscript.pt")
    step, vocab, hidden_shape = load_step(model, "cpu")
    spec = BulkSpec(num, temperature=1.0, seed=7)
    decoder = bulk_decoder(step, vocab, hidden_shape, spec, "cpu", batch)
    bulk, loop = [], []
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        out = Path(tmp) / "names.txt"
        for _ in range(repeats):
            started = time.perf_counter()
            write_names(out, decoder, vocab, spec, batch_size=batch)
            bulk.append(num / (time.perf_counter() - started))
        head = out.read_text(encoding="utf-8").split("\n")[:loop_num]
        same = True
        for _ in range(repeats):
            started = time.perf_counter()
            names, rows = [], make_rows(vocab, "", num=loop_num, temperature=1.0, seed=7)
            for lo in range(0, loop_num, batch):
                ids = decode(step, rows[lo:lo + batch], bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                             hidden_shape=hidden_shape)
                names.extend(vocab.decode(i) for i in ids)
            (Path(tmp) / "loop.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
            loop.append(loop_num / (time.perf_counter() - started))
            same &= names == head
    return {"num": num, "loop_num": loop_num, "batch": batch, "threads": torch.get_num_threads(),
            "bulk_names_per_s": summary(bulk), "loop_names_per_s": summary(loop), "same_names": same,
            "target_names_per_s": TARGET}


def markdown(r: dict) -> str:
    ratio = r["bulk_names_per_s"]["median"] / r["loop_names_per_s"]["median"]
    met = "met" if r["bulk_names_per_s"]["median"] >= r["target_names_per_s"] else "**missed**"
    rows = [["bulk (`make names`: model.chunked + NameText)", f"{r['num']:,}", fmt(r["bulk_names_per_s"])],
            ["per-step loop (model.decode + Vocab.decode)", f"{r['loop_num']:,}", fmt(r["loop_names_per_s"])]]
    return (table(["path (T=1, seed 7, to a file)", "names", "names/s"], rows) + "\n\n"
            f"Batches of {r['batch']:,} rows, {r['threads']} torch thread(s); bulk / loop = {ratio:.1f}×; "
            f"the same names on both paths: {'yes' if r['same_names'] else '**NO**'}; target "
            f">= {r['target_names_per_s']:,} names/s: {met}.")
