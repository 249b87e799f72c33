"""Hyper-parameter sweep for time to quality on a corpus: one run per configuration, validation
NLL at each milestone (bench.quality.time_to_quality), written as sweep.json and sweep.md.

The configurations vary one knob at a time around a base (batch size, learning rate and its
schedule, hidden size, layers, count weighting), for the GRU and the tanh RNN; the best by the
last milestone is the candidate for presets/ibge.toml (GRU) and presets/ibge-rnn.toml (RNN).

Usage (the real sweep: every configuration trains for the last milestone's seconds; the corpus
defaults to the default model's, `make data`'s census names):
  python -m bench.sweep [--corpus artifacts/corpus.txt] --milestones 60,180,300 --threads 2 \
      --out-dir artifacts/bench [--page docs/results/sweep.md]
A quick check of the code: --milestones 10,20 --threads 1 --only gru-base,rnn-base
--render SWEEP_JSON --page PAGE writes the page of an earlier run again (after a change of layout).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

from bench.common import describe
from bench.quality import bigram_baseline, time_to_quality
from core import contract
from core.atomic import exit_on_sigterm, write_text_atomic
from data.corpus import read_corpus
from model.config import PRESET_DIR, load_preset
from model.train import TrainConfig
from tools.machine import machine_info, machine_line
from tools.result_page import command_line, write_result_page
from tools.tables import table

# The knobs the sweep varies; every other field is TrainConfig's default (threads, seed and the
# split from the command line).
SWEPT = ("cell", "hidden_size", "num_layers", "batch_size", "lr", "lr_schedule", "lr_decay", "count_weighting",
         "length_pool")


def preset_knobs(name: str, preset_dir: Path = PRESET_DIR) -> dict:
    """The swept knobs of presets/NAME.toml, read by model.config's loader (one spelling of them)."""
    config = load_preset(name, preset_dir).config
    return {k: getattr(config, k) for k in SWEPT}


# The bases: the presets' settings, the GRU's before the sweep chose 96 units and `make eval` chose
# sqrt count weighting (kept so that the configurations, and the pages they wrote, stay the same).
IBGE = load_preset("ibge-single").config
GRU_BASE = dict(preset_knobs("ibge-single"), hidden_size=64, count_weighting="none")
RNN_BASE = preset_knobs("ibge-rnn")

# name -> the TrainConfig fields it sets (one knob changed from its base, except the *-base rows)
CONFIGS: dict[str, dict] = {
    "gru-base": GRU_BASE,
    "gru-batch32": dict(GRU_BASE, batch_size=32),
    "gru-batch128": dict(GRU_BASE, batch_size=128),
    "gru-batch256": dict(GRU_BASE, batch_size=256),
    "gru-lr0.003": dict(GRU_BASE, lr=0.003),
    "gru-lr0.02": dict(GRU_BASE, lr=0.02),
    "gru-constant-lr": dict(GRU_BASE, lr_schedule="exp", lr_decay=1.0),
    "gru-batch32-exp": dict(GRU_BASE, batch_size=32, lr=0.003, lr_schedule="exp", lr_decay=0.995),
    "gru-hidden48": dict(GRU_BASE, hidden_size=48),
    "gru-hidden96": dict(GRU_BASE, hidden_size=96),
    # the ibge preset with batches of similar-length names (model.train length_batches)
    "gru-hidden96-pool2": dict(GRU_BASE, hidden_size=96, length_pool=2),
    "gru-hidden96-pool4": dict(GRU_BASE, hidden_size=96, length_pool=4),
    "gru-hidden96-pool32": dict(GRU_BASE, hidden_size=96, length_pool=32),
    "gru-2layers-h40": dict(GRU_BASE, hidden_size=40, num_layers=2),
    "gru-count-log": dict(GRU_BASE, count_weighting="log"),
    "gru-count-sqrt": dict(GRU_BASE, count_weighting="sqrt"),
    "gru-1thread": dict(GRU_BASE, threads=1),
    "rnn-base": RNN_BASE,
    "rnn-lr0.01": dict(RNN_BASE, lr=0.01),
    "rnn-batch32": dict(RNN_BASE, batch_size=32),
    "rnn-batch32-exp": dict(RNN_BASE, batch_size=32, lr=0.003, lr_schedule="exp", lr_decay=0.995),
    "rnn-1thread": dict(RNN_BASE, threads=1),
}


def run_sweep(entries, base: TrainConfig, configs: dict[str, dict], milestones: list[float],
              log=print) -> list[dict]:
    rows = []
    for name, fields in configs.items():
        cfg = replace(base, **fields)
        started = time.perf_counter()
        result = time_to_quality(entries, cfg, milestones)
        rows.append({"name": name, "config": {k: getattr(cfg, k) for k in (*fields, "threads")}, **result})
        finals = ", ".join(f"{m}s {r['val_nll']:.4f}" for m, r in result["milestones"].items())
        log(f"{name}: {finals} ({result['parameters']:,} parameters, {time.perf_counter() - started:.0f} s)")
    return rows


def markdown(result: dict) -> str:
    return "\n".join(["# Time-to-quality sweep", "", f"Machine: {machine_line(result['machine'])}.",
                      markdown_body(result)])


def markdown_body(result: dict) -> str:
    """The sweep's table and notes, without title and machine (the result page stamps those)."""
    milestones = result["milestones"]
    last = str(milestones[-1])
    rows = sorted(result["rows"], key=lambda r: (r["config"]["cell"], _nan_last(r["milestones"][last]["val_nll"])))
    best = {cell: next(r["name"] for r in rows if r["config"]["cell"] == cell)
            for cell in sorted({r["config"]["cell"] for r in rows})}
    header = ["configuration", "settings", "parameters",
              *[f"val NLL @ {m:g} s" for m in milestones], "steps", "symbols/s"]
    body = [[f"**{r['name']}**" if r["name"] in best.values() else r["name"], describe(r["config"]),
             f"{r['parameters']:,}", *[f"{r['milestones'][str(m)]['val_nll']:.4f}" for m in milestones],
             f"{r['steps']:,}", f"{r['targets_per_s']:,.0f}"] for r in rows]
    b = result["bigram"]
    return "\n".join([
        (f"Corpus `{result['corpus']}`{' (title-cased)' if result['title_case'] else ''}; "
        f"torch threads as in the settings; one run per configuration (seed {result['seed']}), "
        "validation NLL in nats/symbol of the weights when the training clock passed each time "
        "(validation between epochs included in the clock)."),
        f"Bigram baseline on the same split: {b['val_nll']:.4f} nats/symbol (α = {b['alpha']}).",
        "",
        table(header, body),
        "",
        "Best per cell (bold): " + ", ".join(f"{cell.upper()} {name}" for cell, name in best.items()) + ". "
        f"symbols/s: training target symbols per second of wall clock. Command: `{result['command']}`.",
    ])


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


def main(argv: list[str] | None = None) -> None:
    exit_on_sigterm()
    p = argparse.ArgumentParser(description="Time-to-quality sweep of training configurations.")
    p.add_argument("--corpus", default=IBGE.corpus, help="default: the ibge-single preset's (`make data`'s census names)")
    p.add_argument("--title-case", action=argparse.BooleanOptionalAction, default=IBGE.title_case,
                   help="title-case the names (an upper-case list such as data/census/ibge_names_train.tsv)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--milestones", default="60,180,300", help="seconds, comma-separated; the last is the budget")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(CONFIGS)}")
    p.add_argument("--out-dir", default=contract.default_path("bench"))
    p.add_argument("--page", default=None, help="also write the result page here (docs/results/sweep.md)")
    p.add_argument("--render", default=None, metavar="SWEEP_JSON",
                   help="measure nothing: write --page from the sweep.json of an earlier run")
    args = p.parse_args(argv)
    if args.render:
        write_page(json.loads(Path(args.render).read_text(encoding="utf-8")), args.page)
        return
    names = args.only.split(",") if args.only else list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"error: unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}")
    milestones = [float(m) for m in args.milestones.split(",")]
    machine = machine_info()
    print(f"machine: {machine_line(machine)}", flush=True)
    entries = read_corpus(args.corpus, title_case=args.title_case)
    base = TrainConfig(val_fraction=args.val_fraction, threads=args.threads, seed=args.seed,
                       title_case=args.title_case)
    bigram = bigram_baseline(entries, args.val_fraction)
    print(f"bigram baseline: {bigram['val_nll']:.4f} nats/symbol", flush=True)
    rows = run_sweep(entries, base, {n: CONFIGS[n] for n in names}, milestones,
                     log=lambda s: print(s, flush=True))
    result = {"machine": machine, "corpus": args.corpus, "title_case": args.title_case, "threads": args.threads,
              "seed": args.seed, "milestones": milestones, "bigram": bigram, "rows": rows,
              "command": command_line("bench.sweep", argv)}
    out = Path(args.out_dir)
    write_text_atomic(out / "sweep.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(out / "sweep.md", markdown(result) + "\n")
    print(f"wrote {out / 'sweep.json'} and {out / 'sweep.md'}")
    write_page(result, args.page)


def write_page(result: dict, page: str | None) -> None:
    if page:
        write_result_page(page, "Time-to-quality sweep: `make sweep`", markdown_body(result),
                          machine=result["machine"], command=result["command"])
        print(f"wrote {page}")


if __name__ == "__main__":
    main()
