"""An ensemble's members trained side by side: one process and one torch thread per member, each
a plain model.train.train run with its own seed (and count weighting, member_weightings), all
within the same max_seconds, so K members cost the wall-clock of one model on K free cores.

The members come back as one model.ensemble.CharRNNEnsemble; its metrics give each member's and
the ensemble's validation NLL, its history every member's epochs (each row names its member).
"""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import replace

import torch

from core.vocab import Vocab
from data.corpus import Entry, split
from model.charrnn import CharRNN, ModelConfig
from model.config import TrainConfig
from model.ensemble import CharRNNEnsemble


def member_configs(cfg: TrainConfig) -> list[TrainConfig]:
    """Each member's own run: seed + i, the i-th of member_weightings (in turn), one thread."""
    weightings = cfg.weightings() or [cfg.count_weighting]
    return [replace(cfg, members=1, seed=cfg.seed + i, count_weighting=weightings[i % len(weightings)], threads=1)
            for i in range(cfg.member_count())]


def _train_member(args: tuple[list[Entry], TrainConfig, bool]) -> tuple[dict, dict, dict, list[dict]]:
    from model.train import train

    entries, cfg, progress = args
    # a forked member inherits the command's SIGTERM handler (core.atomic.exit_on_sigterm), which
    # is for the parent's temporary file; the pool's terminate must end a member at once
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    model, _vocab, metrics, history = train(entries, cfg, progress=progress)
    return model.config.to_dict(), {k: v.clone() for k, v in model.state_dict().items()}, metrics, history


def train_members(entries: list[Entry], cfg: TrainConfig, *, progress: bool = True,
                  log=print) -> tuple[CharRNNEnsemble, Vocab, dict, list[dict]]:
    """Train cfg.member_count() members in parallel; return (ensemble, vocabulary, metrics, history).
    Only the first member draws a progress bar (they share the clock)."""
    from model.train import encode_names, evaluate

    configs = member_configs(cfg)
    if len(configs) < 2:
        raise ValueError(f"an ensemble needs at least 2 members; members = {cfg.members} gives {len(configs)}")
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(len(configs)) as pool:
        results = pool.map(_train_member, [(entries, c, progress and i == 0) for i, c in enumerate(configs)])
    members = []
    for config, state, _metrics, _history in results:
        member = CharRNN(ModelConfig.from_dict(config))
        member.load_state_dict(state)
        members.append(member.eval())
    ensemble = CharRNNEnsemble.of(members).eval()
    vocab = Vocab.from_names(e.name for e in entries)
    train_entries, val_entries = split(entries, cfg.val_fraction)
    val_data = encode_names([e.name for e in val_entries], vocab) if val_entries else None
    torch.set_num_threads(max(1, cfg.threads))
    member_metrics = [{**r[2], "seed": c.seed, "count_weighting": c.count_weighting} for r, c in zip(results, configs)]
    metrics = {
        "best_val_loss": evaluate(ensemble, val_data, torch.device("cpu")),
        "members": member_metrics,
        "best_member_val_loss": min(m["best_val_loss"] for m in member_metrics),
        "seconds": max(m["seconds"] for m in member_metrics),
        "stopped_by": member_metrics[0]["stopped_by"],
        "train_names": len(train_entries),
        "val_names": len(val_entries),
        "parameters": sum(p.numel() for p in ensemble.parameters()),
    }
    history = [{"member": i, **row} for i, r in enumerate(results) for row in r[3]]
    for i, m in enumerate(member_metrics):
        log(f"member {i} (seed {m['seed']}, count weighting {m['count_weighting']}): validation loss "
            f"{m['best_val_loss']:.4f} at epoch {m['best_epoch']} of {m['epochs_run']}")
    return ensemble, vocab, metrics, history

