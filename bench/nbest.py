"""n-best latency against greedy, for the torch engine and the ONNX runtime, in one run.

For every first letter of the vocabulary (and the empty prefix), batch 1, single-threaded:
- torch engine (serve.engine.Engine over the TorchScript step, with the one-graph decoder for
  greedy names as served on CPU): a greedy request answered with its log-probability (what the
  endpoint returns), the same without scoring (names only), and n-best requests of num 5 and 20;
- ONNX runtime (runtime.generator.NameGenerator with charrnn_generate.onnx): greedy names, and
  NameGenerator.nbest for num 5 and 20.
Reports p50 and p99 ms per request, the ratio to the greedy answer of the same backend, and the
search's work (expansions and step calls, mean and max). The backends' n-best lists must agree.

Usage: python -m bench.nbest [--art-dir artifacts] [--repeats 3]; also the `generation` section
of `make bench`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from core import contract
from tools.tables import table

NUMS = (5, 20)


def measure(art_dir: str | Path = contract.ART_DIR, *, repeats: int = 3, letters: int | None = None) -> dict:
    """`letters`: only the first that many first letters (a quick run); default every one."""
    import torch

    from model import nbest
    from runtime.generator import NameGenerator
    from serve.engine import Engine
    from serve.validation import GenerateRequest
    from tools.machine import machine_info

    machine = machine_info()
    torch.set_num_threads(1)
    d = Path(art_dir)
    engine = Engine.from_artifacts(d / contract.TORCHSCRIPT, d / contract.VOCAB,
                                   greedy_graph=d / contract.ONNX_GENERATE)
    onnx = NameGenerator(d / contract.ONNX_STEP, threads=1, generate_model=d / contract.ONNX_GENERATE)
    prefixes = ["", *engine.vocab.characters[:letters]]
    work: dict[str, list[tuple[int, int, bool]]] = {f"nbest {n}": [] for n in NUMS}
    agree = True
    for p in prefixes:  # the work is deterministic: measured once, outside the timing
        for n in NUMS:
            found = onnx.nbest(p, num=n)
            work[f"nbest {n}"].append((found.expansions, found.step_calls, found.complete))
            agree &= engine.answer([GenerateRequest(prefix=p, num=n)])[0].names == \
                [onnx.vocab.decode(i) for i in found.ids]

    cases = {
        ("torch", "greedy + logprob"): lambda p: engine.answer([GenerateRequest(prefix=p)]),
        ("torch", "greedy, names only"): lambda p: engine.generate([GenerateRequest(prefix=p)]),
        ("onnx", "greedy + logprob"): lambda p: onnx.ranked(p),
        ("onnx", "greedy, names only"): lambda p: onnx.generate(p),
    }
    for n in NUMS:
        cases[("torch", f"nbest {n}")] = lambda p, n=n: engine.answer([GenerateRequest(prefix=p, num=n)])
        cases[("onnx", f"nbest {n}")] = lambda p, n=n: onnx.nbest(p, num=n)
    for run in cases.values():  # warm-up
        run("")
    times: dict = {k: [] for k in cases}
    for _ in range(repeats):
        for p in prefixes:
            for key, run in cases.items():  # interleaved: background load hits every case alike
                start = time.perf_counter()
                run(p)
                times[key].append(time.perf_counter() - start)
    rows = {}
    for (backend, what), t in times.items():
        ms = np.array(t) * 1e3
        rows[f"{backend}: {what}"] = {"backend": backend, "request": what, "p50_ms": float(np.percentile(ms, 50)),
                                      "p99_ms": float(np.percentile(ms, 99))}
    for r in rows.values():
        r["vs_greedy"] = r["p50_ms"] / rows[f"{r['backend']}: greedy + logprob"]["p50_ms"]
    searches = {k: {"expansions_mean": float(np.mean([e for e, _, _ in v])), "expansions_max": max(e for e, _, _ in v),
                    "step_calls_mean": float(np.mean([c for _, c, _ in v])),
                    "incomplete": sum(1 for *_, done in v if not done)} for k, v in work.items()}
    return {"machine": machine, "prefixes": len(prefixes), "repeats": repeats, "agree": bool(agree),
            "max_expansions": nbest.DEFAULT_MAX_EXPANSIONS, "width": nbest.DEFAULT_WIDTH,
            "rows": rows, "searches": searches}


def format_table(result: dict) -> str:
    lines = [(f"n-best against greedy, batch 1, one thread; {result['prefixes']} prefixes (empty and every first "
             f"letter) x {result['repeats']} rounds, interleaved; bound {result['max_expansions']} expansions, "
             f"{result['width']} prefixes per step call."), "",
             table(["backend", "request", "p50 ms", "p99 ms", "p50 vs greedy + logprob"],
                   [[r["backend"], r["request"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['vs_greedy']:.1f}×"]
                    for r in result["rows"].values()], "llrrr")]
    lines += ["", table(["search", "expansions (mean)", "expansions (max)", "step calls (mean)", "stopped by the bound"],
                        [[k, f"{s['expansions_mean']:.0f}", s["expansions_max"], f"{s['step_calls_mean']:.1f}",
                          s["incomplete"]] for k, s in result["searches"].items()], "lrrrr")]
    lines += ["", f"Torch engine and ONNX runtime n-best lists agree: {'yes' if result['agree'] else 'NO'}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from tools.machine import machine_line

    p = argparse.ArgumentParser(description="n-best latency against greedy (torch engine, ONNX runtime).")
    p.add_argument("--art-dir", default=contract.ART_DIR)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    result = measure(args.art_dir, repeats=args.repeats)
    print(f"machine: {machine_line(result['machine'])}\n\n{format_table(result)}")


if __name__ == "__main__":
    main()
