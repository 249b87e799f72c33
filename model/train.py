"""Batched training of the CharRNN on a name corpus.

Each name is one padded row: input  <s> c1 .. cn, target c1 .. cn <s>; every position is
teacher-forced and the cross-entropy is masked to the real positions (end token included).

Usage: python -m model.train [--preset NAME] [--corpus FILE] [options] [--out FILE]
Defaults: model/config.py (TrainConfig); `--help` shows them, or a preset's with `--preset NAME --help`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from core import contract
from core.atomic import exit_on_sigterm, write_text_atomic
from core.vocab import Vocab
from data.corpus import Entry, read_corpus, split
from model.charrnn import CharRNN, ModelConfig
from model.checkpoint import save_checkpoint
from model.config import (
    CELLS,
    COUNT_WEIGHTINGS,
    FIELD_TYPES,
    LR_SCHEDULES,
    PRESET_DIR,
    PresetError,
    TrainConfig,
    artifact_dir,
    load_preset,
)
from model.progress import TrainingProgress

IGNORE = -100
# the exponent of a name's count in its sampling weight ("log": log1p of the count instead)
COUNT_WEIGHTING = {"none": 0.0, "log": None, "sqrt": 0.5, "linear": 1.0}
assert tuple(COUNT_WEIGHTING) == COUNT_WEIGHTINGS
COSINE_FLOOR = 0.01  # the cosine schedule ends at this fraction of the initial learning rate


@dataclass
class Encoded:
    inputs: torch.Tensor  # int64 [N, T]
    targets: torch.Tensor  # int64 [N, T], IGNORE past each name's end
    lengths: torch.Tensor  # int64 [N], name length + 1 (the end token)


def encode_names(names: list[str], vocab: Vocab) -> Encoded:
    width = max(len(n) for n in names) + 1
    inputs = torch.full((len(names), width), vocab.eos_id, dtype=torch.long)
    targets = torch.full((len(names), width), IGNORE, dtype=torch.long)
    for i, name in enumerate(names):
        ids = torch.tensor(vocab.encode(name), dtype=torch.long)
        inputs[i, 0] = vocab.bos_id
        inputs[i, 1 : len(ids) + 1] = ids
        targets[i, : len(ids)] = ids
        targets[i, len(ids)] = vocab.eos_id
    return Encoded(inputs, targets, torch.tensor([len(n) + 1 for n in names]))


def sampling_weights(entries: list[Entry], mode: str) -> torch.Tensor | None:
    if mode not in COUNT_WEIGHTING:
        raise ValueError(f"count_weighting must be one of {sorted(COUNT_WEIGHTING)}, got {mode!r}")
    if mode == "none":
        return None
    counts = torch.tensor([e.count for e in entries], dtype=torch.float64)
    weights = torch.log1p(counts) if mode == "log" else counts ** COUNT_WEIGHTING[mode]
    return weights / weights.sum()


def length_batches(order: torch.Tensor, lengths: torch.Tensor, batch_size: int, pool: int,
                   generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Batches of `order` (name indices), lazily: each run of `pool` batches' worth of names is
    sorted by length, cut into batches, and those are yielded in random order. Every name keeps
    its place in the epoch's draw (to within a pool); only who shares a batch changes."""
    if pool <= 1:
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]
        return
    span = batch_size * pool
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        batches = chunk[torch.argsort(lengths[chunk], stable=True)].split(batch_size)
        for i in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[i]


def batch_loss(model: CharRNN, data: Encoded, index: torch.Tensor, device: torch.device,
               soft: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the real positions of the names at `index`, and their count:
    against the names' next characters, or against `soft`, a teacher's next-character
    probabilities [names, positions, vocab] for the same rows (model.distill)."""
    width = int(data.lengths[index].max())
    inputs = data.inputs[index, :width].to(device)
    targets = data.targets[index, :width].to(device)
    logits, _ = model(inputs)
    if soft is None:
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
                               reduction="sum")
    else:
        per_position = -(soft[index, :width].to(device) * torch.log_softmax(logits, dim=-1)).sum(-1)
        loss = per_position[targets != IGNORE].sum()
    return loss, int(data.lengths[index].sum())


@torch.no_grad()
def evaluate(model: CharRNN, data: Encoded | None, device: torch.device, batch_size: int = 1024) -> float:
    """Mean negative log-likelihood in nats per symbol (characters and end token)."""
    if data is None:
        return math.nan
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data.lengths), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data.lengths)))
        loss, n = batch_loss(model, data, index, device)
        total, count = total + float(loss), count + n
    return total / count


def cosine_factor(progress: float) -> float:
    """Learning-rate multiplier of the cosine schedule at `progress` in [0, 1]."""
    progress = min(max(progress, 0.0), 1.0)
    return COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(entries: list[Entry], cfg: TrainConfig, *, progress: bool = True,
          on_epoch=None, on_step=None) -> tuple[CharRNN, Vocab, dict, list[dict]]:
    """Train on `entries`; return (best model, vocabulary, metrics, per-epoch history).

    on_epoch(row, model) is called after each epoch's validation with its history row;
    on_step(info, model) after each optimiser step, with info = {"epoch", "step", "targets"
    (symbols in that batch), "seconds" (wall clock since training started, the max_seconds
    clock)}: e.g. for throughput or for snapshots at fixed times.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but CUDA is not available")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)

    train_entries, val_entries = split(entries, cfg.val_fraction)
    vocab = Vocab.from_names(e.name for e in entries)
    train_data = encode_names([e.name for e in train_entries], vocab)
    val_data = encode_names([e.name for e in val_entries], vocab) if val_entries else None
    weights = sampling_weights(train_entries, cfg.count_weighting)

    soft, teacher = None, {}
    if cfg.teacher:  # distillation: the teacher's distributions replace the next characters
        from model.distill import teacher_targets

        soft, fingerprint = teacher_targets(cfg.teacher, cfg, vocab, len(train_entries), len(val_entries), train_data)
        teacher = {"teacher_fingerprint": fingerprint}

    model = CharRNN(ModelConfig(len(vocab), cfg.hidden_size, cfg.num_layers, cfg.cell, cfg.dropout)).to(device)
    # fused: one kernel for all of Adam's per-parameter updates instead of several per parameter
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 fused=device.type in ("cpu", "cuda") or None)
    per_epoch = cfg.samples_per_epoch or len(train_entries)
    cosine = cfg.lr_schedule == "cosine"
    scheduler = None if cosine else torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    total_steps = cfg.epochs * math.ceil(per_epoch / cfg.batch_size)
    step = 0

    best_state, best_val, best_epoch = None, math.inf, 0
    history: list[dict] = []
    started = time.perf_counter()
    out_of_time = False
    bar = TrainingProgress(cfg.epochs, cfg.max_seconds, enabled=progress)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        if weights is None:
            order = torch.randperm(len(train_entries), generator=generator)
            order = order.repeat(math.ceil(per_epoch / len(order)))[:per_epoch]
        else:
            order = torch.multinomial(weights, per_epoch, replacement=True, generator=generator)
        total, count = 0.0, 0
        for index in length_batches(order, train_data.lengths, cfg.batch_size, cfg.length_pool, generator):
            if cosine:
                done = (time.perf_counter() - started) / cfg.max_seconds if cfg.max_seconds else step / total_steps
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * cosine_factor(done)
            loss_sum, n = batch_loss(model, train_data, index, device, soft)
            optimizer.zero_grad(set_to_none=True)
            (loss_sum / n).backward()
            if cfg.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            total, count = total + float(loss_sum.detach()), count + n
            step += 1
            elapsed = time.perf_counter() - started
            if on_step is not None:
                on_step({"epoch": epoch, "step": step, "targets": n, "seconds": elapsed}, model)
            bar.tick(elapsed)
            if cfg.max_seconds and time.perf_counter() - started > cfg.max_seconds:
                out_of_time = True
                break
        if scheduler is not None:
            scheduler.step()
        train_loss = total / max(count, 1)
        val_loss = evaluate(model, val_data, device)
        score = val_loss if val_data is not None else train_loss
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
               "seconds": time.perf_counter() - started, "lr": optimizer.param_groups[0]["lr"]}
        history.append(row)
        if score < best_val:
            best_val, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        bar.epoch_done(epoch, row["seconds"], train=f"{train_loss:.3f}", val=f"{val_loss:.3f}", best=str(best_epoch))
        if on_epoch is not None:
            on_epoch(row, model)
        if out_of_time:
            break
        if cfg.patience and epoch - best_epoch >= cfg.patience:
            break
    bar.close()
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    stopped = "max_seconds" if out_of_time else ("early_stopping" if epoch < cfg.epochs else "epochs")
    metrics = {
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "best_val_loss": best_val if val_data is not None else math.nan,
        "train_loss_at_best": history[best_epoch - 1]["train_loss"],
        "seconds": time.perf_counter() - started,
        "stopped_by": stopped,
        "train_names": len(train_entries),
        "val_names": len(val_entries),
        "parameters": sum(p.numel() for p in model.parameters()),
        **teacher,
    }
    return model.cpu(), vocab, metrics, history


def history_by_member(history: list[dict]) -> list[tuple[str, list[dict]]]:
    """(label, rows) per member of an ensemble's history (rows carry "member"), or ("", history)."""
    groups: dict = {}
    for row in history:
        groups.setdefault(row.get("member"), []).append(row)
    return [("" if key is None else f"member {key} ", rows) for key, rows in groups.items()]


def write_history(out_dir: Path, history: list[dict]) -> None:
    """history.csv, history.json and loss.png (training and validation loss per epoch)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(out_dir / "history.csv", buf.getvalue())
    write_text_atomic(out_dir / "history.json", json.dumps(history, indent=1) + "\n")
    plot_loss(out_dir / "loss.png", history)


def plot_loss(path: Path, history: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for label, rows in history_by_member(history):
        epochs = [r["epoch"] for r in rows]
        ax.plot(epochs, [r["train_loss"] for r in rows], label=f"{label}train")
        if not all(math.isnan(r["val_loss"]) for r in rows):
            ax.plot(epochs, [r["val_loss"] for r in rows], label=f"{label}validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats / symbol)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default (TrainConfig's or the preset's), except where it is None."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser(defaults: TrainConfig | None = None) -> argparse.ArgumentParser:
    """The command line; every option's default is `defaults`' value (TrainConfig's own, or a
    preset's), never a number of its own."""
    d = defaults or TrainConfig()
    p = argparse.ArgumentParser(prog="python -m model.train", description="Train a CharRNN on a name corpus.",
                                formatter_class=_ShowDefaults)
    p.add_argument("--preset", default=None,
                   help="presets/NAME.toml: its values replace the defaults shown here; options given here still win")
    p.add_argument("--preset-dir", default=str(PRESET_DIR), help="where --preset looks")
    p.add_argument("--corpus", default=d.corpus, help="corpus file: one name per line, optionally name<TAB>count")
    p.add_argument("--out", default=None,
                   help=f"checkpoint to write (atomically); default {artifact_dir(None)}/{contract.CHECKPOINT}, "
                        f"or {artifact_dir('NAME')}/{contract.CHECKPOINT} with --preset NAME")
    p.add_argument("--history-dir", default=None, help="where history.csv/json and loss.png go (default: beside --out)")
    p.add_argument("--title-case", action=argparse.BooleanOptionalAction, default=d.title_case,
                   help="title-case names (e.g. for the upper-case IBGE list)")
    p.add_argument("--hidden", type=int, default=d.hidden_size, dest="hidden_size", help="hidden units per layer")
    p.add_argument("--layers", type=int, default=d.num_layers, dest="num_layers", help="recurrent layers")
    p.add_argument("--cell", choices=CELLS, default=d.cell, help="tanh RNN or GRU")
    p.add_argument("--dropout", type=float, default=d.dropout, help="between layers (2+ layers)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="at most this many epochs")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="names per optimiser step")
    p.add_argument("--length-pool", type=int, default=d.length_pool,
                   help="batches per pool of names sorted by length (0: no sorting)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam's learning rate")
    p.add_argument("--lr-decay", type=float, default=d.lr_decay, help="per-epoch factor of the exp schedule")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule,
                   help="exp: per-epoch decay by --lr-decay; cosine: down to 1%% of --lr over "
                        "--max-seconds (or over --epochs without a budget)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="Adam's weight decay")
    p.add_argument("--clip", type=float, default=d.clip, help="gradient norm clipping; 0 = none")
    p.add_argument("--patience", type=int, default=d.patience, help="epochs without improvement; 0 = never stop")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of names held out for validation")
    p.add_argument("--count-weighting", choices=COUNT_WEIGHTINGS, default=d.count_weighting,
                   help="sample names by this function of their corpus count")
    p.add_argument("--samples-per-epoch", type=int, default=d.samples_per_epoch, help="0 = the training-set size")
    p.add_argument("--seed", type=int, default=d.seed, help="makes a CPU run without a time budget reproducible")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds, help="wall-clock budget; 0 = none")
    p.add_argument("--device", default=d.device, help="cpu or cuda")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads; 0 = torch's default")
    p.add_argument("--members", type=int, default=d.members,
                   help="an ensemble of this many models trained side by side, one core each; 1 = a single model, "
                        "0 = one per usable core")
    p.add_argument("--member-weightings", default=d.member_weightings,
                   help="count weightings the members take in turn, e.g. sqrt,none (empty: --count-weighting)")
    p.add_argument("--teacher", default=d.teacher,
                   help="distil: learn this checkpoint's next-character distributions (same corpus and split)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """(the configuration, the parsed options): TrainConfig's defaults, then the --preset's
    values, then the options given."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--preset", default=None)
    first.add_argument("--preset-dir", default=str(PRESET_DIR))
    known, _ = first.parse_known_args(argv)
    try:
        defaults = load_preset(known.preset, Path(known.preset_dir)).config if known.preset else TrainConfig()
    except PresetError as exc:
        build_parser().error(str(exc))
    args = build_parser(defaults).parse_args(argv)
    try:
        cfg = replace(defaults, **{k: v for k, v in vars(args).items() if k in FIELD_TYPES})
    except ValueError as exc:
        build_parser().error(str(exc))
    return cfg, args


def main(argv: list[str] | None = None) -> None:
    from data.corpus import CorpusError
    from model.distill import TeacherError
    from model.members import MemberError

    try:
        run(argv)
    except (CorpusError, TeacherError, MemberError) as exc:  # bad input or a failed member: the message says it
        raise SystemExit(f"error: {exc}") from None


def run(argv: list[str] | None = None) -> None:
    cfg, args = parse_args(argv)
    exit_on_sigterm()
    entries = read_corpus(cfg.corpus, title_case=cfg.title_case)
    out = Path(args.out or f"{artifact_dir(args.preset)}/{contract.CHECKPOINT}")
    if cfg.members != 1 and cfg.member_count() == 1:
        print(f"members = {cfg.members} gives 1 member here (1 usable core): training a single model "
              f"(count weighting {cfg.count_weighting})")
    if cfg.member_count() > 1:
        from model.members import train_members

        model, vocab, metrics, history = train_members(entries, cfg, progress=not args.no_progress)
        summary = (f"ensemble of {len(metrics['members'])}: validation loss {metrics['best_val_loss']:.4f} "
                   f"nats/symbol, best member {metrics['best_member_val_loss']:.4f} ({metrics['seconds']:.1f}s")
    else:
        model, vocab, metrics, history = train(entries, cfg, progress=not args.no_progress)
        summary = (f"best validation loss {metrics['best_val_loss']:.4f} nats/symbol at epoch {metrics['best_epoch']} "
                   f"({metrics['epochs_run']} epochs, {metrics['seconds']:.1f}s")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, vocab, metrics=metrics, history=history, train_args=asdict(cfg))
    write_history(Path(args.history_dir) if args.history_dir else out.parent, history)
    print(f"{summary}, stopped by {metrics['stopped_by']}); wrote {out}")

if __name__ == "__main__":
    main()
