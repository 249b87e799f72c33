"""Write the model-quality report of a checkpoint: report.md, report.json, samples.txt, PNG figures.

Usage: python -m evaluation --checkpoint artifacts/checkpoint.pt --out-dir artifacts/report
                            [--page docs/results/eval-default.md]

--page also writes the report as a result page (tools.result_page: stamped with date, machine and
command, its figures in a folder beside it); `make eval` passes $(RESULTS_DIR)/eval-<preset>.md.
--card also writes the model card (evaluation.card) from the report's figures, once the report is
written, and only when its text changed; `make eval` passes $(ART)/model_card.md.

An ensemble's checkpoint is also compared with its members, and a distilled student's with its
teacher and the teacher's best member (evaluation.compare: NLL, parameters, cost per greedy name,
n-best lists side by side), in the report, the page and a summary printed at the end;
--no-compare leaves that out.

The corpus, title-casing and validation fraction come from the checkpoint's train_args (the
split it was trained on); --corpus, --title-case/--no-title-case and --val-fraction override them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from pathlib import Path

from core import contract
from core.atomic import exit_on_sigterm, write_text_atomic
from data.corpus import CorpusError
from evaluation import compare, figures, markdown
from evaluation.card import build_card, write_card
from evaluation.report import EvalError, build_report, load_inputs
from model.checkpoint import CheckpointError


def write_report(rep: dict, out_dir: Path, *, command: str, generated: str | None = None) -> Path:
    """Write every file of the report into `out_dir`; return the path of report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    generated = generated or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    dist = rep["distributions"]
    corpus_label = ("corpus" if rep["corpus"]["count_weighting"] == "none" else
                    "corpus (weighted as member 0 was trained)" if len(set(rep["corpus"]["member_weightings"])) > 1
                    else "corpus (weighted as in training)")
    figures.compare_bars(out_dir / markdown.FIGURES["lengths"], dist["length"]["samples"],
                         dist["length"]["corpus"], xlabel="name length (characters)",
                         title="Length of sampled names and corpus names", corpus_label=corpus_label)
    figures.compare_bars(out_dir / markdown.FIGURES["first_letters"], dist["first_letter"]["samples"],
                         dist["first_letter"]["corpus"], xlabel="first letter",
                         title="First letter of sampled names and corpus names", corpus_label=corpus_label)
    if rep["history"]:
        figures.loss_curves(out_dir / markdown.FIGURES["loss"], rep["history"],
                            rep["likelihood"]["bigram"]["val"]["nats_per_symbol"])
    write_text_atomic(out_dir / "samples.txt", "".join(f"{s}\n" for s in rep["_samples"]))
    public = {k: v for k, v in rep.items() if not k.startswith("_")}
    public["generated"], public["command"] = generated, command
    write_text_atomic(out_dir / "report.json", json.dumps(public, indent=1, ensure_ascii=False) + "\n")
    path = out_dir / "report.md"
    write_text_atomic(path, markdown.render(rep, generated=generated, command=command))
    return path


def write_page(rep: dict, report_dir: Path, page: Path, *, command: str) -> Path:
    """The report of `report_dir` as a result page, its figures copied beside it."""
    from tools.machine import machine_info
    from tools.result_page import figure_dir, write_result_page

    figs = {name: report_dir / name for name in markdown.FIGURES.values() if (report_dir / name).is_file()}
    m = rep["model"]
    distilled = f" distilled from `{m['teacher']}`" if m.get("teacher") else ""
    title = f"Model quality: {m['label']}{distilled} on `{rep['corpus']['path']}`"
    return write_result_page(page, title, markdown.render_body(rep, figure_dir(page)), machine=machine_info(),
                             command=command, figures=figs)


def main(argv: list[str] | None = None) -> None:
    exit_on_sigterm()
    p = argparse.ArgumentParser(description="Model-quality report of a CharRNN checkpoint.")
    p.add_argument("--checkpoint", default=contract.default_path(contract.CHECKPOINT))
    p.add_argument("--out-dir", default=None, help="default: report/ beside the checkpoint")
    p.add_argument("--corpus", default=None, help="default: the corpus in the checkpoint's train_args")
    p.add_argument("--title-case", action=argparse.BooleanOptionalAction, default=None,
                   help="default: as the checkpoint was trained")
    p.add_argument("--val-fraction", type=float, default=None, help="default: as the checkpoint was trained")
    p.add_argument("--samples", type=int, default=1000, help="names sampled at --temperature")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--page", default=None, help="also write the report as this result page (docs/results/...)")
    p.add_argument("--card", default=None, help=f"also write the model card here ({contract.MODEL_CARD})")
    p.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True,
                   help="an ensemble: beside its members; a distilled student: beside its teacher and the teacher's "
                        "best member (NLL, parameters, cost per greedy name, n-best lists)")
    p.add_argument("--compare-prefixes", default=",".join(compare.NBEST_PREFIXES),
                   help="comma-separated prefixes of the side-by-side n-best lists (a leading comma: the empty one)")
    p.add_argument("--compare-repeats", type=int, default=compare.REPEATS, help="timed rounds of the cost per greedy name")
    args = p.parse_args(argv)
    if args.compare_repeats < 1:
        p.error("--compare-repeats must be at least 1")
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.checkpoint).parent / "report"
    try:
        inputs = load_inputs(args.checkpoint, args.corpus, args.title_case, args.val_fraction)
        rep = build_report(inputs, num_samples=args.samples, seed=args.seed, temperature=args.temperature)
        card = build_card(inputs, rep) if args.card else None
        cands, teacher = compare.checkpoint_candidates(inputs) if args.compare else ([], None)
        if cands:
            rep["comparison"] = compare.compare(cands, inputs, teacher=teacher,
                                                nbest_prefixes=args.compare_prefixes.split(","),
                                                repeats=args.compare_repeats)
    except (EvalError, CheckpointError, CorpusError) as exc:
        raise SystemExit(f"error: {exc}") from None
    command = "python -m evaluation " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    path = write_report(rep, out_dir, command=command.strip())
    if args.page:
        write_page(rep, out_dir, Path(args.page), command=command.strip())
    if card is not None:
        wrote = write_card(args.card, card, if_changed=True)
        print(f"{'wrote' if wrote else 'unchanged:'} {args.card}")
    mv, bv = rep["likelihood"]["model"]["val"], rep["likelihood"]["bigram"]["val"]
    nov = rep["samples"]["novelty"]
    mp = rep["likelihood"]["model"]["val_per_person"]
    print(f"validation NLL {mv['nats_per_symbol']:.4f} nats/symbol ({mv['bits_per_char']:.3f} bits/char) per name, "
          f"{mp['nats_per_symbol']:.4f} per person (count-weighted); "
          f"bigram {bv['nats_per_symbol']:.4f} ({bv['bits_per_char']:.3f}); samples: "
          f"{nov['train_share']:.1%} training copies, {nov['val_share']:.1%} validation copies, "
          f"{nov['new_share']:.1%} new; wrote {path}")
    if rep.get("comparison"):
        print("\n".join(compare.summary_lines(rep["comparison"])))


if __name__ == "__main__":
    main()
