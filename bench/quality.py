"""Time to quality: validation NLL after fixed wall-clock times of one training run; and the
ensemble and its distilled student against the best single model, trained in one run.

Two parts (`--quality-parts`, bench/__main__.py):

- presets: one model.train.train run per preset and seed with max_seconds = the last milestone;
  its on_step hook copies the weights when the training clock (the max_seconds clock, validation
  between epochs included) passes each milestone, and the copies are scored on the validation
  split after the run, by model.train.evaluate, against the bigram baseline fitted on the same split.
- ensemble: the ensemble preset's members trained side by side (model.members.train_members),
  then the student preset's single model distilled from that ensemble (model.train.train with
  TrainConfig.teacher = the ensemble's checkpoint, kept in a temporary file), then the three
  models side by side by evaluation.compare (the best member, the ensemble, the student: the
  comparison `make eval` writes for a student's checkpoint).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from core.vocab import Vocab
from data.corpus import Entry, split
from evaluation.bigram import Bigram, choose_alpha
from model.charrnn import CharRNN
from model.train import TrainConfig, encode_names, evaluate, train


def bigram_baseline(entries: list[Entry], val_fraction: float) -> dict:
    """Validation NLL (nats/symbol) of the add-alpha bigram fitted on the training split."""
    train_entries, val_entries = split(entries, val_fraction)
    vocab = Vocab.from_names(e.name for e in entries)
    train_names, val_names = [e.name for e in train_entries], [e.name for e in val_entries]
    alpha, _ = choose_alpha(train_names, val_names, vocab)
    total, n = Bigram.fit(train_names, vocab, alpha).nll(val_names, vocab)
    return {"val_nll": total / n, "alpha": alpha}


class Snapshots:
    """on_step hook: the weights at the first step at or past each milestone (seconds). The last
    milestone is the run's budget, so near it every step is kept: the run may stop between two
    steps that straddle it."""

    def __init__(self, milestones: list[float]):
        self.milestones = sorted(milestones)
        self.states: dict[float, tuple[float, dict]] = {}
        self.last_seconds = 0.0
        self.step_seconds = 0.0
        self.steps = 0
        self.targets = 0

    def __call__(self, info: dict, model) -> None:
        seconds = info["seconds"]
        self.step_seconds = max(self.step_seconds, seconds - self.last_seconds) if self.steps else 0.0
        self.last_seconds, self.steps, self.targets = seconds, self.steps + 1, self.targets + info["targets"]
        final = self.milestones[-1]
        for m in self.milestones:
            due = seconds >= m if m != final else seconds >= m - 3 * self.step_seconds
            if due and (m not in self.states or (m == final and self.states[m][0] < m)):
                self.states[m] = (seconds, {k: v.detach().clone() for k, v in model.state_dict().items()})


def time_to_quality(entries: list[Entry], cfg: TrainConfig, milestones: list[float]) -> dict:
    """Validation NLL at each milestone of one run of `cfg` (trained until the last milestone)."""
    snaps = Snapshots(milestones)
    run = replace(cfg, max_seconds=max(milestones), epochs=10**6, patience=0)
    model, vocab, metrics, _history = train(entries, run, progress=False, on_step=snaps)
    val_data = encode_names([e.name for e in split(entries, cfg.val_fraction)[1]], vocab)
    probe = CharRNN(model.config)
    at = {}
    for m in snaps.milestones:
        if m not in snaps.states:
            at[str(m)] = {"val_nll": math.nan, "seconds": math.nan}
            continue
        seconds, state = snaps.states[m]
        probe.load_state_dict(state)
        at[str(m)] = {"val_nll": evaluate(probe, val_data, torch.device("cpu")), "seconds": seconds}
    return {"milestones": at, "best_val_loss": metrics["best_val_loss"], "epochs": metrics["epochs_run"],
            "steps": snaps.steps, "targets_per_s": snaps.targets / max(snaps.last_seconds, 1e-9),
            "parameters": metrics["parameters"], "seconds": metrics["seconds"]}


def measure_presets(presets, milestones: list[float], *, repeats: int = 3, threads: int | None = None,
                    log=print) -> dict:
    """time_to_quality of each preset `repeats` times (seeds seed, seed+1, ...), with the bigram
    baseline of each corpus split. `presets`: model.config.Preset objects; `threads` replaces
    their THREADS when given."""
    from bench.common import summary
    from data.corpus import read_corpus

    corpora: dict = {}
    out = {"milestones": milestones, "repeats": repeats, "presets": {}}
    for preset in presets:
        key = (preset.corpus, preset.config.title_case, preset.config.val_fraction)
        if key not in corpora:
            entries = read_corpus(preset.corpus, title_case=preset.config.title_case)
            corpora[key] = (entries, bigram_baseline(entries, preset.config.val_fraction))
        entries, bigram = corpora[key]
        c = replace(preset.config, threads=threads or preset.config.threads)
        runs = []
        for i in range(repeats):
            runs.append(time_to_quality(entries, replace(c, seed=c.seed + i), milestones))
            log(f"{preset.name} run {i + 1}/{repeats}: " + ", ".join(
                f"{m}s {r['val_nll']:.4f}" for m, r in runs[-1]["milestones"].items()))
        fields = ("cell", "hidden_size", "num_layers", "batch_size", "lr", "lr_schedule", "lr_decay",
                  "count_weighting", "val_fraction", "threads")
        out["presets"][preset.name] = {
            "corpus": preset.corpus, "title_case": c.title_case, "bigram": bigram,
            "config": {k: getattr(c, k) for k in fields},
            "parameters": runs[0]["parameters"],
            "val_nll": {str(m): summary([r["milestones"][str(m)]["val_nll"] for r in runs]) for m in milestones},
            "targets_per_s": summary([r["targets_per_s"] for r in runs]),
            "runs": runs,
        }
    return out


def markdown(result: dict) -> str:
    """The presets part's table."""
    from bench.common import describe, fmt
    from tools.tables import table

    milestones = result["milestones"]
    rows, notes = [], []
    for name, p in result["presets"].items():
        rows.append([f"`PRESET={name}`", describe(p["config"]), f"{p['parameters']:,}",
                     *[fmt(p["val_nll"][str(m)], ".4f") for m in milestones],
                     f"{p['bigram']['val_nll']:.4f}"])
        gap = p["bigram"]["val_nll"] - p["val_nll"][str(milestones[-1])]["median"]
        notes.append(f"{name}: {gap:.4f} nats/symbol below the bigram at {milestones[-1]:g} s")
    corpus = {p["corpus"] for p in result["presets"].values()}
    return "\n".join([
        (f"Corpus {', '.join(f'`{c}`' for c in sorted(corpus))}; torch threads as in the settings; "
        f"validation NLL in nats/symbol, median (min–max, n) of {result['repeats']} runs (seeds differ), "
        "each run one training with the weights scored when its clock passed each time "
        "(validation between epochs counted in the clock)."),
        "",
        table(["preset", "settings", "parameters", *[f"val NLL @ {m:g} s" for m in milestones],
               "bigram (same split)"], rows),
        "",
        "; ".join(notes) + ".",
    ])


def ensemble_and_student(ensemble, student, *, nbest_prefixes=None, repeats: int | None = None, log=print) -> dict:
    """The ensemble preset's members trained side by side, the student preset's model distilled
    from that ensemble, and the best member, the ensemble and the student side by side
    (evaluation.compare). `ensemble`, `student`: model.config.Preset objects on the same corpus
    and split; the student's own `teacher` is replaced by the ensemble trained here."""
    from data.corpus import read_corpus
    from evaluation import compare
    from evaluation.report import load_inputs
    from model.checkpoint import save_checkpoint
    from model.members import train_members

    ec, sc = ensemble.config, student.config
    for field in ("corpus", "title_case", "val_fraction"):
        if getattr(ec, field) != getattr(sc, field):
            raise ValueError(f"PRESET={student.name}'s {field} {getattr(sc, field)!r} is not PRESET={ensemble.name}'s "
                             f"{getattr(ec, field)!r}: a student learns from its teacher on the same names and split")
    if ec.member_count() < 2:
        raise ValueError(f"PRESET={ensemble.name} trains {ec.member_count()} member(s): not an ensemble")
    entries = read_corpus(ec.corpus, title_case=ec.title_case)
    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        started = time.perf_counter()
        model, vocab, metrics, history = train_members(entries, ec, progress=False, log=log)
        ensemble_wall = time.perf_counter() - started
        teacher = Path(tmp) / "ensemble.pt"
        save_checkpoint(teacher, model, vocab, metrics=metrics, history=history, train_args=asdict(ec))
        log(f"ensemble of {len(metrics['members'])}: validation loss {metrics['best_val_loss']:.4f}, best member "
            f"{metrics['best_member_val_loss']:.4f} ({ensemble_wall:.0f} s)")
        distil = replace(sc, teacher=str(teacher))
        started = time.perf_counter()
        model, vocab, smetrics, shistory = train(entries, distil, progress=False)
        student_wall = time.perf_counter() - started
        path = Path(tmp) / "student.pt"
        save_checkpoint(path, model, vocab, metrics=smetrics, history=shistory, train_args=asdict(distil))
        log(f"student: validation loss {smetrics['best_val_loss']:.4f} ({student_wall:.0f} s)")
        inputs = load_inputs(path)
        cands, teacher_info = compare.checkpoint_candidates(inputs)
        if teacher_info is None or teacher_info["status"] != "compared":
            raise RuntimeError(f"the student's teacher could not be compared: {teacher_info}")
        options = {k: v for k, v in (("nbest_prefixes", nbest_prefixes), ("repeats", repeats)) if v is not None}
        comparison = compare.compare(cands, inputs, **options)
    fields = ("cell", "hidden_size", "num_layers", "batch_size", "lr", "lr_schedule", "lr_decay",
              "count_weighting", "val_fraction", "threads", "max_seconds")
    members = [{k: m.get(k) for k in ("seed", "count_weighting", "best_epoch", "epochs_run", "best_val_loss",
                                      "seconds")} for m in metrics["members"]]
    return {
        "corpus": ec.corpus, "title_case": ec.title_case,
        "ensemble": {"preset": ensemble.name, "config": {k: getattr(ec, k) for k in fields},
                     "member_weightings": ec.member_weightings, "members": members,
                     "best_val_loss": metrics["best_val_loss"], "best_member_val_loss": metrics["best_member_val_loss"],
                     "wall_seconds": ensemble_wall},
        "student": {"preset": student.name, "config": {k: getattr(sc, k) for k in fields},
                    "best_epoch": smetrics["best_epoch"], "epochs_run": smetrics["epochs_run"],
                    "best_val_loss": smetrics["best_val_loss"], "wall_seconds": student_wall},
        "comparison": comparison,
    }


def ensemble_markdown(result: dict) -> str:
    """The ensemble part: what was trained, then the side-by-side comparison."""
    from bench.common import describe
    from evaluation import compare
    from tools.tables import table

    e, s = result["ensemble"], result["student"]
    rows = [[f"member {i} (`PRESET={e['preset']}`)", describe({**e["config"], "count_weighting": m["count_weighting"],
                                                               "threads": 1}) + f", seed {m['seed']}",
             f"best epoch {m['best_epoch']} of {m['epochs_run']}, {m['seconds']:.0f} s", f"{m['best_val_loss']:.4f}"]
            for i, m in enumerate(e["members"])]
    rows.append([f"ensemble of {len(e['members'])}", "the members above, averaged as one step",
                 f"{e['wall_seconds']:.0f} s wall clock for all members", f"{e['best_val_loss']:.4f}"])
    rows.append([f"student (`PRESET={s['preset']}`)", describe(s["config"]) + ", distilled from the ensemble",
                 f"best epoch {s['best_epoch']} of {s['epochs_run']}, {s['wall_seconds']:.0f} s",
                 f"{s['best_val_loss']:.4f}"])
    return "\n".join([
        (f"Trained in this run on `{result['corpus']}`: the {len(e['members'])} members of `PRESET={e['preset']}` side "
         f"by side (model.members: one process and one core each, {e['config']['max_seconds']:g} s each), then "
         f"`PRESET={s['preset']}`'s model ({s['config']['max_seconds']:g} s) on the ensemble's next-character "
         "distributions (its teacher: this ensemble, saved to a temporary checkpoint). Validation loss as "
         "training measured it, nats/symbol:"),
        "",
        table(["model", "settings", "training", "validation loss"], rows, "lllr"),
        "",
        compare.markdown(result["comparison"], heading="####").rstrip(),
    ])
