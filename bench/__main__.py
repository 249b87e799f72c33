"""`make bench`: training throughput, time to quality, generation and serving, in one run.

Usage: python -m bench [--sections training,quality,generation,bulk,serving,sessions] [--out-dir artifacts/bench]
       python -m bench --sections quality --quality-parts ensemble   (the ensemble and its student only)

Prints the machine first, then runs the chosen sections in order and writes bench.json and
bench.md into --out-dir, and with --results-dir each section that ran to the end as its own result
page, RESULTS_DIR/bench-<section>.md (tools.result_page; `make bench` passes docs/results). A run
of some sections replaces those sections in bench.json and keeps the others from earlier runs;
every section records when and on what machine it was measured.
Every figure is the median of several repetitions with min and max.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from core import contract
from core.atomic import exit_on_sigterm, write_text_atomic
from model.config import PRESET_DIR, TrainConfig
from tools.machine import machine_info, machine_line
from tools.result_page import command_line, write_result_page

DEFAULTS = TrainConfig()  # the training section measures make train's model unless told otherwise
SECTIONS = ("training", "quality", "generation", "bulk", "serving", "sessions")
TITLES = {"training": "Training throughput", "quality": "Time to quality; the ensemble and its student",
          "generation": "Generation", "bulk": "Bulk generation", "serving": "Serving",
          "sessions": "Serving: typing sessions"}


class NotWired(RuntimeError):
    """A section whose benchmark is not connected to the harness yet."""


class Skipped(RuntimeError):
    """A section that cannot run here (e.g. its corpus is not on this machine)."""


def run_training(args) -> dict:
    import torch

    from bench import training
    from data.corpus import read_corpus

    corpus = args.train_corpus or str(Path(args.art_dir) / contract.CORPUS)
    entries = read_corpus(corpus)
    threads = args.threads or DEFAULTS.threads or torch.get_num_threads()
    cfg = TrainConfig(hidden_size=args.train_hidden, cell=args.train_cell, threads=threads)  # else make train's
    result = training.measure(entries, cfg, batch_sizes=tuple(int(b) for b in args.train_batches.split(",")),
                              seconds=args.train_seconds, repeats=args.repeats)
    return {"data": {**result, "corpus": corpus}, "markdown": training.markdown(result, corpus)}


def _load_presets(args, names: list[str]) -> list:
    """The presets by name; one that names no corpus trains on the default one, which `make`
    builds into --art-dir. Skipped when a corpus is not there."""
    from dataclasses import replace

    from model.config import load_preset

    presets = [load_preset(name, Path(args.preset_dir)) for name in names]
    default_corpus = str(Path(args.art_dir) / contract.CORPUS)
    presets = [p if "corpus" in p.values else replace(p, config=replace(p.config, corpus=default_corpus))
               for p in presets]
    missing = sorted({p.corpus for p in presets if not Path(p.corpus).is_file()})
    if missing:
        raise Skipped(f"corpus not found: {', '.join(missing)} (the presets' CORPUS)")
    return presets


def _quality_presets(args) -> dict:
    from bench import quality

    presets = _load_presets(args, args.presets.split(","))
    milestones = [float(m) for m in args.milestones.split(",")]
    result = quality.measure_presets(presets, milestones, repeats=args.quality_repeats, threads=args.threads,
                                     log=lambda s: print(f"  {s}", flush=True))
    return {"data": result, "markdown": quality.markdown(result)}


def _quality_ensemble(args) -> dict:
    from bench import quality
    from model.config import PresetError

    try:
        ensemble, student = _load_presets(args, [args.ensemble_preset, args.student_preset])
    except PresetError as exc:
        raise Skipped(str(exc)) from None
    if ensemble.config.member_count() < 2:  # members = 0 on a machine with one usable core
        raise Skipped(f"PRESET={ensemble.name} trains {ensemble.config.member_count()} member(s) here: not an ensemble")
    result = quality.ensemble_and_student(ensemble, student, nbest_prefixes=args.compare_prefixes.split(","),
                                          repeats=args.compare_repeats, log=lambda s: print(f"  {s}", flush=True))
    return {"data": result, "markdown": quality.ensemble_markdown(result)}


QUALITY_PARTS = {"presets": _quality_presets, "ensemble": _quality_ensemble}
PART_TITLES = {"presets": "Presets: validation NLL after fixed training times",
               "ensemble": "The best single model, the ensemble and the distilled student"}


def _previous_parts(args) -> dict:
    """The quality parts of the last run in --out-dir's bench.json (a run from before the parts:
    its presets table), each with the machine and command that measured it."""
    section = read_sections(Path(args.out_dir) / "bench.json").get("quality") or {}
    data = section.get("data") if section.get("status") == "ok" else None
    if not isinstance(data, dict):
        return {}
    if "parts" in data:
        return {k: v for k, v in data["parts"].items() if isinstance(v, dict) and v.get("status") == "ok"}
    if "presets" in data:
        return {"presets": {"status": "ok", "data": data, "markdown": section.get("markdown", ""),
                            "machine": section.get("machine"), "command": section.get("command")}}
    return {}


def quality_parts(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in QUALITY_PARTS]
    if unknown or not chosen:
        raise SystemExit(f"error: --quality-parts: unknown part(s) {unknown}; choose from {', '.join(QUALITY_PARTS)}")
    return chosen


def run_quality(args) -> dict:
    """The parts of --quality-parts, run in order; a part not run this time (or skipped) keeps its
    last good run from bench.json, which the page says, with that run's machine and command."""
    chosen = quality_parts(args.quality_parts)
    previous = _previous_parts(args)
    parts, skipped = {}, []
    for name, runner in QUALITY_PARTS.items():
        if name in chosen:
            print(f"  -- {PART_TITLES[name]}", flush=True)
            try:
                parts[name] = {**runner(args), "status": "ok", "machine": machine_info(),
                               "command": args.command}
                continue
            except Skipped as exc:
                skipped.append(f"{name}: {exc}")
                if name not in previous:
                    parts[name] = {"status": "skipped", "error": str(exc)}
        if name in previous:
            parts[name] = {**previous[name], "earlier": True}
    if not any(p["status"] == "ok" and not p.get("earlier") for p in parts.values()):
        raise Skipped("; ".join(skipped))
    out = []
    for name, part in parts.items():
        out += [f"### {PART_TITLES[name]}", ""]
        if part["status"] != "ok":
            out += [f"**skipped**: {part['error']}", ""]
            continue
        if part.get("earlier"):
            machine = machine_line(part["machine"]) if part.get("machine") else "on an unrecorded machine"
            out += [f"(From an earlier run: measured {machine}; command `{part.get('command')}`.)", ""]
        out += [part["markdown"], ""]
    return {"data": {"parts": parts}, "markdown": "\n".join(out).rstrip()}


def run_generation(args) -> dict:
    # Hook for the runtime benchmark (bench/runtime.py, `make bench-runtime`): its table, as is.
    try:
        from bench import runtime
    except ImportError as exc:
        raise NotWired(f"bench/runtime.py is not there yet ({exc})") from None
    from bench import nbest

    result = runtime.measure(args.art_dir, repeats=args.gen_repeats, batch=args.gen_batch)
    result["nbest"] = nbest.measure(args.art_dir, repeats=args.nbest_repeats)
    return {"data": result, "markdown": runtime.format_setup(result) + "\n\n" + runtime.format_table(result)
            + "\n\n" + nbest.format_table(result["nbest"])}


def run_bulk(args) -> dict:
    # bench/bulk.py: `make names` (model.names) to a file, beside the per-step loop, in one run.
    from bench import bulk

    if not (Path(args.art_dir) / contract.TORCHSCRIPT).is_file():
        raise Skipped(f"{args.art_dir}/{contract.TORCHSCRIPT} not found (make export)")
    result = bulk.measure(args.art_dir, num=args.bulk_num, repeats=args.bulk_repeats, loop_num=args.bulk_loop_num,
                          workers=args.bulk_workers)
    return {"data": result, "markdown": bulk.markdown(result)}


def run_serving(args) -> dict:
    # bench/serving.py (`make bench-serving`): a real TorchServe, the shipped handler beside a
    # do-nothing one, closed and open loop; the session benchmark; the batching sweep.
    from bench import serving

    try:
        return serving.section(args)
    except serving.Unavailable as exc:  # no Java 17, or no archives
        raise Skipped(str(exc)) from None


def run_sessions(args) -> dict:
    # bench/sessions.py (`make bench-serving`): thousands of typists, open loop, on a real
    # TorchServe's session model, then 10,000 open sessions and the worker's memory.
    from bench import sessions

    try:
        return sessions.section(args)
    except sessions.Unavailable as exc:  # no Java 17, or no session archive
        raise Skipped(str(exc)) from None


RUNNERS = {"training": run_training, "quality": run_quality, "generation": run_generation,
           "bulk": run_bulk, "serving": run_serving, "sessions": run_sessions}


def render(results: dict) -> str:
    out = ["# Benchmarks", "",
           ("Written by `make bench` (`python -m bench`); each section says when and on what machine it "
           "was measured. Figures: median (min–max, n) of repeated measurements."), ""]
    for name in SECTIONS:
        section = results.get(name)
        if section is None:
            continue
        out += [f"## {TITLES[name]}", "", (f"Measured {machine_line(section['machine'])}; "
                f"{section['seconds']:.0f} s; command `{section['command']}`."), ""]
        if section["status"] == "ok":
            out.append(section["markdown"])
        else:
            out.append(f"**{section['status']}**: {section['error']}")
        out.append("")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Training, quality, generation and serving benchmarks.")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    p.add_argument("--out-dir", default=contract.default_path("bench"))
    p.add_argument("--results-dir", default=None,
                   help="also write each section that ran to the end as RESULTS_DIR/bench-<section>.md")
    p.add_argument("--art-dir", default=contract.ART_DIR, help="the pipeline's artifacts (corpus, exports)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for the training sections (default: make train's THREADS for throughput, "
                        "each preset's THREADS for time to quality)")
    p.add_argument("--repeats", type=int, default=3, help="repetitions of the training-throughput figures")
    g = p.add_argument_group("training throughput")
    g.add_argument("--train-corpus", default=None, help=f"default: ART_DIR/{contract.CORPUS}")
    g.add_argument("--train-seconds", type=float, default=5.0, help="measured seconds per loop and repetition")
    g.add_argument("--train-batches", default="32,64,128,512",
                   help=f"batch sizes of the project's loop ({DEFAULTS.batch_size}: the default of `make train`)")
    g.add_argument("--train-hidden", type=int, default=DEFAULTS.hidden_size)
    g.add_argument("--train-cell", default=DEFAULTS.cell)
    g = p.add_argument_group("time to quality")
    g.add_argument("--presets", default="ibge-single,ibge-rnn", help="presets/NAME.toml to train")
    g.add_argument("--preset-dir", default=str(PRESET_DIR))
    g.add_argument("--milestones", default="60,180,300", help="seconds; the last is each run's budget")
    g.add_argument("--quality-repeats", type=int, default=3)
    g.add_argument("--quality-parts", default=",".join(QUALITY_PARTS),
                   help="comma-separated parts: presets (validation NLL at each milestone), ensemble (the ensemble "
                        "preset's members, then the student preset distilled from them, side by side with the best "
                        "member); a part not run keeps its last run from bench.json")
    g.add_argument("--ensemble-preset", default="ibge-ensemble", help="the ensemble part's members (presets/NAME.toml)")
    g.add_argument("--student-preset", default="ibge",
                   help="the ensemble part's student (presets/NAME.toml; its teacher: the ensemble trained in the run)")
    from evaluation import compare

    g.add_argument("--compare-prefixes", default=",".join(compare.NBEST_PREFIXES),
                   help="the n-best lists' prefixes, comma-separated (a leading comma: the empty prefix)")
    g.add_argument("--compare-repeats", type=int, default=compare.REPEATS,
                   help="timed rounds of the cost per greedy name")
    g = p.add_argument_group("generation (bench/runtime.py)")
    g.add_argument("--gen-repeats", type=int, default=20)
    g.add_argument("--gen-batch", type=int, default=256)
    g.add_argument("--nbest-repeats", type=int, default=3, help="rounds of the n-best latency table (bench/nbest.py)")
    g = p.add_argument_group("bulk generation (bench/bulk.py)")
    g.add_argument("--bulk-num", type=int, default=200_000, help="names per bulk run")
    g.add_argument("--bulk-repeats", type=int, default=3)
    g.add_argument("--bulk-loop-num", type=int, default=20_000, help="names per run of the per-step loop")
    g.add_argument("--bulk-workers", type=int, default=None, help="processes of the parallel figure (default: usable cores)")
    g = p.add_argument_group("serving (bench/serving.py)")
    from bench import serving

    serving.add_arguments(g)
    g = p.add_argument_group("typing sessions (bench/sessions.py; archives: --serving-model-store)")
    g.add_argument("--sessions-rows", default="1000:corpus,2000:corpus,1000:model",
                   help="TYPISTS:NAMES,... simulated typists (one keystroke a second each, open loop) and what "
                        "they type: corpus (ART_DIR's training corpus), model (the served model's samples) or a "
                        "corpus file")
    g.add_argument("--sessions-seconds", type=float, default=30.0, help="measured seconds per row")
    g.add_argument("--sessions-warmup", type=float, default=5.0, help="unrecorded seconds of typing before each row")
    g.add_argument("--sessions-jvm-warmup", type=float, default=20.0,
                   help="unrecorded seconds of typing after TorchServe's start (until the JVM's JIT settles)")
    g.add_argument("--sessions-open", type=int, default=10_000, help="sessions opened and held at the end (0: none)")
    g.add_argument("--sessions-connections", type=int, default=64, help="keep-alive connections the typists share")
    g.add_argument("--sessions-append", action="store_true",
                   help="send {'append'} after a session's first keystroke instead of the whole text")
    return p


def read_sections(path: Path) -> dict:
    """The sections already in bench.json ({} if there is none or it is unreadable)."""
    try:
        sections = json.loads(path.read_text(encoding="utf-8")).get("sections", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return sections if isinstance(sections, dict) else {}


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    args = build_parser().parse_args(argv)
    args.command = command_line("bench", argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"error: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    quality_parts(args.quality_parts)  # a misspelt part fails here, not after the sections before it
    machine = machine_info()
    print(f"machine: {machine_line(machine)}", flush=True)
    out = Path(args.out_dir)
    done: dict = {}  # the sections of this run
    command = command_line("bench", argv)
    failed = []
    for name in (s for s in SECTIONS if s in chosen):
        print(f"== {TITLES[name]}", flush=True)
        started = time.perf_counter()
        section = {"machine": machine_info(), "command": command.strip()}
        try:
            section.update(RUNNERS[name](args), status="ok")
        except NotWired as exc:
            section.update(status="not wired", error=str(exc))
        except Skipped as exc:
            section.update(status="skipped", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - one failing section must not lose the others
            traceback.print_exc()
            section.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            failed.append(name)
        section["seconds"] = time.perf_counter() - started
        done[name] = section
        print(section.get("markdown") or f"{section['status']}: {section['error']}", flush=True)
        # re-read just before writing: another `make bench` of other sections may have finished meanwhile
        results = {**read_sections(out / "bench.json"), **done}
        write_text_atomic(out / "bench.json", json.dumps({"sections": results}, indent=1) + "\n")
        write_text_atomic(out / "bench.md", render(results))
        if args.results_dir and section["status"] == "ok":  # a failed or skipped run keeps the last page
            write_result_page(Path(args.results_dir) / f"bench-{name}.md", f"{TITLES[name]}: `make bench SECTIONS={name}`",
                              section["markdown"], machine=section["machine"], command=section["command"])
    print(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
