"""Greedy generation speed of the four backends, measured in one run on one machine.

Backends: eager PyTorch (model.decode over CharRNN), TorchScript (model.decode over the scripted
step), the ONNX Runtime step loop (runtime.generator, one session.run per character) and the
one-graph loop (charrnn_generate.onnx, one session.run per batch). All single-threaded
(torch.set_num_threads(1), ORT intra-op 1) so that the comparison is per core.

- latency: per-name wall time at batch 1, greedy, one name per first letter of the vocabulary,
  all letters `repeats` times (backends interleaved per round, so background load hits all
  alike); p50 and p99.
- throughput: names/second for one call of `batch` greedy names (first letters cycled), the
  median of `repeats` calls.
- where ONNX Runtime's time goes (`ort_costs`): the fixed cost of a session.run, one step, and
  the one-graph decoder's set-up and per-character cost, which explain the two ONNX rows.

Usage: python -m bench.runtime [--art-dir artifacts] [--repeats 20] [--batch 256] [--page PATH]
(`make bench-runtime`); prints the machine and the table, writes artifacts/bench/runtime.{json,md}
and, with --page, the result page (docs/results/bench-runtime.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx

from core import contract
from core.atomic import write_text_atomic
from tools.result_page import command_line, write_result_page
from tools.tables import table

BACKENDS = ("eager", "torchscript", "onnx_step", "onnx_graph")
THREADS = "1 for every backend (torch.set_num_threads(1), ORT intra_op_num_threads=1)"
LABELS = {"eager": "eager PyTorch", "torchscript": "TorchScript", "onnx_step": "ONNX Runtime step loop",
          "onnx_graph": "ONNX one-graph loop"}


def load_backends(art_dir: str | Path) -> tuple[dict, object]:
    """name -> generate_rows(rows) callable, and the vocabulary."""
    from model.generate import TorchGenerator
    from runtime.generator import NameGenerator

    d = Path(art_dir)
    eager = TorchGenerator.from_checkpoint(d / contract.CHECKPOINT)
    backends = {
        "eager": eager.generate_rows,
        "torchscript": TorchGenerator.from_torchscript(d / contract.TORCHSCRIPT).generate_rows,
        "onnx_step": NameGenerator(d / contract.ONNX_STEP, threads=1).generate_rows,
        "onnx_graph": NameGenerator(d / contract.ONNX_STEP, threads=1,
                                    generate_model=d / contract.ONNX_GENERATE).generate_rows,
    }
    return backends, eager


def ort_costs(art_dir: str | Path, rounds: int = 15, calls: int = 200) -> dict:
    """Where ONNX Runtime's time goes on this machine, in µs per call (median of `rounds`, the
    probes interleaved): `floor`, one session.run of a one-node graph from Python; `step`, one
    run of charrnn.onnx at batch 1; `graph_fixed`, charrnn_generate.onnx for one name capped at
    one character (the outer graph, the Loop's set-up and one iteration); `graph_per_char`, each
    further iteration (the longest greedy name against that cap)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from core.request import DEFAULT_MAX_LENGTH, Row
    from runtime.generator import NameGenerator
    from runtime.session import session_options

    d = Path(art_dir)
    gen = NameGenerator(d / contract.ONNX_STEP, threads=1, generate_model=d / contract.ONNX_GENERATE)
    identity = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "floor",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1])]), opset_imports=[helper.make_opsetid("", 18)])
    identity.ir_version = min(identity.ir_version, onnx.IR_VERSION)
    floor = ort.InferenceSession(identity.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    vocab, hidden = gen.vocab, np.zeros((gen.step.hidden_shape[0], 1, gen.step.hidden_shape[1]), np.float32)
    letters = vocab.encode("".join(vocab.characters))
    longest = max(letters, key=lambda i: len(gen.greedy.decode([Row((i,))])[0]))

    def graph_feed(cap: int) -> dict:
        return {"prefix": np.array([[longest]], np.int64), "prefix_length": np.array([1], np.int64),
                "max_length": np.array(cap, np.int64)}

    one, full = graph_feed(1), graph_feed(DEFAULT_MAX_LENGTH)
    step_proto = onnx.load(str(d / contract.ONNX_STEP))
    steps_full = gen.greedy.session.run(["ids"], full)[0].shape[1]
    probes = {
        "floor": lambda: floor.run(["y"], {"x": np.zeros(1, np.int64)}),
        "step": lambda: gen.step.session.run(["logits", "hidden_out"], {"char": np.array([longest]), "hidden": hidden}),
        "graph_1": lambda: gen.greedy.session.run(["ids", "length"], one),
        "graph_full": lambda: gen.greedy.session.run(["ids", "length"], full),
    }
    times: dict[str, list[float]] = {k: [] for k in probes}
    for _ in range(rounds):
        for k, fn in probes.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times[k].append((time.perf_counter() - start) / calls * 1e6)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"floor_us": med["floor"], "step_us": med["step"], "graph_fixed_us": med["graph_1"],
            "graph_per_char_us": (med["graph_full"] - med["graph_1"]) / max(1, steps_full - 1),
            "graph_iterations": int(steps_full), "step_nodes": len(step_proto.graph.node)}


def measure(art_dir: str | Path = contract.ART_DIR, *, repeats: int = 20, batch: int = 256) -> dict:
    """Latency (µs per name at batch 1: p50, p99) and names/s at `batch` for every backend."""
    import torch

    from core.request import Row
    from tools.machine import machine_info

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

    result = {"machine": machine, "threads": THREADS, "model": {k: getattr(eager.step.__self__.config, k) for k in ("cell", "hidden_size", "num_layers")}
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
    result["ort_costs"] = ort_costs(art_dir)
    return result


def format_table(result: dict) -> str:
    """Markdown: the table, then the issue's targets."""
    b = result["backends"]
    lines = [table(["backend", "p50 µs/name (batch 1)", "p99 µs/name", "speed-up vs eager (p50)",
                    f"names/s (batch {result['batch']})", "vs eager"],
                   [[LABELS[name], f"{b[name]['p50_us']:.0f}", f"{b[name]['p99_us']:.0f}",
                     f"{b[name]['p50_speedup']:.1f}×", f"{b[name]['names_per_s']:,.0f}",
                     f"{b[name]['throughput_ratio']:.1f}×"] for name in BACKENDS], "lrrrrr")]
    step_vs_eager = b["onnx_step"]["p50_speedup"]
    graph_vs_step = b["onnx_step"]["p50_us"] / b["onnx_graph"]["p50_us"]
    lines += ["",
              (f"Targets: ONNX step loop ≥ 3× eager per name: {step_vs_eager:.1f}× "
              f"({'met' if step_vs_eager >= 3 else 'NOT met'}); one-graph ≥ 3× the step loop: "
              f"{graph_vs_step:.1f}× ({'met' if graph_vs_step >= 3 else 'NOT met'}); one-graph name < 100 µs: "
              f"{b['onnx_graph']['p50_us']:.0f} µs ({'met' if b['onnx_graph']['p50_us'] < 100 else 'NOT met'})."),
              f"Greedy names of all four backends agree: {'yes' if result['names_agree'] else 'NO'}."]
    c = result.get("ort_costs")
    if c:
        lines += ["", (f"Where ONNX Runtime's time goes (µs per call, median): session.run floor (a one-node graph) "
                       f"{c['floor_us']:.1f}; one step of charrnn.onnx ({c['step_nodes']} nodes) {c['step_us']:.1f}; "
                       f"charrnn_generate.onnx for one name capped at 1 character {c['graph_fixed_us']:.1f}, then "
                       f"{c['graph_per_char_us']:.1f} per further character (measured over a "
                       f"{c['graph_iterations']}-iteration name).")]
    return "\n".join(lines)


def format_machine(result: dict) -> str:
    from tools.machine import machine_line

    return f"machine: {machine_line(result['machine'])}\n" + format_setup(result)


def format_setup(result: dict) -> str:
    """Threads, model and workload, one line each (Markdown line breaks)."""
    model = result["model"]
    return (f"threads: {result['threads']}  \n"
            f"model: {model['cell']} {model['num_layers']}x{model['hidden_size']}, {model['vocab_size']} symbols; "
            f"{result['names_per_round']} first letters x {result['repeats']} rounds, mean greedy name "
            f"{result['mean_name_length']:.1f} characters  \n"
            "Figures are wall-clock on a possibly shared machine: compare ratios from one run, not runs.")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Per-name latency and throughput of the four greedy backends.")
    p.add_argument("--art-dir", default=contract.ART_DIR)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--out", default=None, help="folder for runtime.json and runtime.md (default: ART_DIR/bench)")
    p.add_argument("--page", default=None, help="also write the result page here (docs/results/bench-runtime.md)")
    args = p.parse_args(argv)
    result = measure(args.art_dir, repeats=args.repeats, batch=args.batch)
    text = format_machine(result) + "\n\n" + format_table(result)
    print(text)
    out = Path(args.out or Path(args.art_dir) / "bench")
    result["command"] = command_line("bench.runtime", argv)
    write_text_atomic(out / "runtime.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(out / "runtime.md", "# make bench-runtime\n\n" + text.replace("\n", "  \n", 1) + "\n")
    print(f"\nwrote {out / 'runtime.json'} and {out / 'runtime.md'}")
    if args.page:
        body = format_setup(result) + "\n\n" + format_table(result)
        write_result_page(args.page, "Greedy generation speed: `make bench-runtime`", body,
                          machine=result["machine"], command=result["command"])
        print(f"wrote {args.page}")


if __name__ == "__main__":
    main()
