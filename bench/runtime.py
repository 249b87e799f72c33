"""Greedy generation speed of the four backends, measured in one run on one machine.

Backends: eager PyTorch (model.decode over CharRNN), TorchScript (model.decode over the scripted
step), the ONNX Runtime step loop (export.runtime, one session.run per character) and the
one-graph loop (charrnn_generate.onnx, one session.run per batch). All single-threaded
(torch.set_num_threads(1), ORT intra-op 1) so that the comparison is per core.

- latency: per-name wall time at batch 1, greedy, one name per first letter of the vocabulary,
  all letters `repeats` times (backends interleaved per round, so background load hits all
  alike); p50 and p99.
- throughput: names/second for one call of `batch` greedy names (first letters cycled), the
  median of `repeats` calls.

Usage: python -m bench.runtime [--art-dir artifacts] [--repeats 20] [--batch 256]
(`make bench-runtime`); prints the machine and the table, writes artifacts/bench/runtime.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BACKENDS = ("eager", "torchscript", "onnx_step", "onnx_graph")
THREADS = "1 for every backend (torch.set_num_threads(1), ORT intra_op_num_threads=1)"
LABELS = {"eager": "eager PyTorch", "torchscript": "TorchScript", "onnx_step": "ONNX Runtime step loop",
          "onnx_graph": "ONNX one-graph loop"}


def load_backends(art_dir: str | Path) -> tuple[dict, object]:
    """name -> generate_rows(rows) callable, and the vocabulary."""
    from export.runtime import NameGenerator
    from model.generate import TorchGenerator

    d = Path(art_dir)
    eager = TorchGenerator.from_checkpoint(d / "checkpoint.pt")
    backends = {
        "eager": eager.generate_rows,
        "torchscript": TorchGenerator.from_torchscript(d / "charrnn.torchscript.pt").generate_rows,
        "onnx_step": NameGenerator(d / "charrnn.onnx", threads=1).generate_rows,
        "onnx_graph": NameGenerator(d / "charrnn.onnx", threads=1,
                                    generate_model=d / "charrnn_generate.onnx").generate_rows,
    }
    return backends, eager


def measure(art_dir: str | Path = "artifacts", *, repeats: int = 20, batch: int = 256) -> dict:
    """Latency (µs per name at batch 1: p50, p99) and names/s at `batch` for every backend."""
    import torch

    from bench.common import machine_info
    from model.request import Row

    machine = machine_info()  # before set_num_threads: it reports torch's default
    torch.set_num_threads(1)
    backends, eager = load_backends(art_dir)
    vocab = eager.vocab
    letters = [Row((i,)) for i in vocab.encode("".join(vocab.characters))]
    names = {b: run(letters) for b, run in backends.items()}  # also the warm-up
    agree = all(names[b] == names["eager"] for b in BACKENDS)

    times: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for _ in range(repeats):
        for b, run in backends.items():
            for row in letters:
                start = time.perf_counter()
                run([row])
                times[b].append(time.perf_counter() - start)

    big = [letters[i % len(letters)] for i in range(batch)]
    calls: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for _ in range(max(3, repeats // 4)):
        for b, run in backends.items():
            start = time.perf_counter()
            run(big)
            calls[b].append(time.perf_counter() - start)

    result = {"machine": machine, "threads": THREADS, "model": {k: getattr(eager.step.config, k) for k in ("cell", "hidden_size", "num_layers")}
              | {"vocab_size": len(vocab)},
              "names_per_round": len(letters), "repeats": repeats, "batch": batch, "names_agree": agree,
              "mean_name_length": float(np.mean([len(n) for n in names["eager"]])), "backends": {}}
    for b in BACKENDS:
        lat = np.array(times[b]) * 1e6
        result["backends"][b] = {"p50_us": float(np.percentile(lat, 50)), "p99_us": float(np.percentile(lat, 99)),
                                 "names_per_s": batch / float(np.median(calls[b]))}
    base = result["backends"]["eager"]
    for r in result["backends"].values():
        r["p50_speedup"] = base["p50_us"] / r["p50_us"]
        r["throughput_ratio"] = r["names_per_s"] / base["names_per_s"]
    return result


def format_table(result: dict) -> str:
    """Markdown: the table, then the issue's targets."""
    b = result["backends"]
    lines = [(f"| backend | p50 µs/name (batch 1) | p99 µs/name | speed-up vs eager (p50) "
              f"| names/s (batch {result['batch']}) | vs eager |"),
             "|---|---:|---:|---:|---:|---:|"]
    for name in BACKENDS:
        r = b[name]
        lines.append(f"| {LABELS[name]} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['p50_speedup']:.1f}× "
                     f"| {r['names_per_s']:,.0f} | {r['throughput_ratio']:.1f}× |")
    step_vs_eager = b["onnx_step"]["p50_speedup"]
    graph_vs_step = b["onnx_step"]["p50_us"] / b["onnx_graph"]["p50_us"]
    lines += ["",
              (f"Targets: ONNX step loop ≥ 3× eager per name: {step_vs_eager:.1f}× "
              f"({'met' if step_vs_eager >= 3 else 'NOT met'}); one-graph ≥ 3× the step loop: "
              f"{graph_vs_step:.1f}× ({'met' if graph_vs_step >= 3 else 'NOT met'}); one-graph name < 100 µs: "
              f"{b['onnx_graph']['p50_us']:.0f} µs ({'met' if b['onnx_graph']['p50_us'] < 100 else 'NOT met'})."),
              f"Greedy names of all four backends agree: {'yes' if result['names_agree'] else 'NO'}."]
    return "\n".join(lines)


def format_machine(result: dict) -> str:
    from bench.common import machine_line

    model = result["model"]
    return (f"machine: {machine_line(result['machine'])}\nthreads: {result['threads']}\n"
            f"model: {model['cell']} {model['num_layers']}x{model['hidden_size']}, {model['vocab_size']} symbols; "
            f"{result['names_per_round']} first letters x {result['repeats']} rounds, mean greedy name "
            f"{result['mean_name_length']:.1f} characters\n"
            "Figures are wall-clock on a possibly shared machine: compare ratios from one run, not runs.")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Per-name latency and throughput of the four greedy backends.")
    p.add_argument("--art-dir", default="artifacts")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--out", default=None, help="folder for runtime.json and runtime.md (default: ART_DIR/bench)")
    args = p.parse_args(argv)
    result = measure(args.art_dir, repeats=args.repeats, batch=args.batch)
    text = format_machine(result) + "\n\n" + format_table(result)
    print(text)
    out = Path(args.out or Path(args.art_dir) / "bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "runtime.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "runtime.md").write_text("# make bench-runtime\n\n" + text.replace("\n", "  \n", 3) + "\n")
    print(f"\nwrote {out / 'runtime.json'} and {out / 'runtime.md'}")


if __name__ == "__main__":
    main()
