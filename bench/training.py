"""Training throughput: the project's batched training against the original notebook's loop.

Both train the same CharRNN (same corpus, cell, hidden size, layers, optimiser, learning rate
and torch thread count) and are measured in target symbols per second: every character of a
name plus its end token is one target, as in the training loss.

- batched: model.train.train itself (padded batches cut as `make train` cuts them, one nn.RNN
  call per batch, fused Adam), timed with its on_step hook between the steps after a warm-up, so
  corpus encoding, validation and set-up are not counted.
- notebook: the original loop, re-implemented here as the baseline: one name per optimiser step,
  batch 1, one nn.RNN call per character on a one-hot [1, 1, V] input, the per-character losses
  summed, then backward and an Adam step.

The two alternate within each repetition, so background load hits both alike; the speed-up is
the ratio within each repetition.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from bench.common import fmt, summary
from core.vocab import Vocab
from data.corpus import Entry, split
from model.charrnn import CharRNN, ModelConfig
from model.train import TrainConfig, train
from tools.tables import table

TARGET_SPEEDUP = 50.0


def batched_throughput(entries: list[Entry], cfg: TrainConfig, seconds: float, warmup: float = 0.5) -> dict:
    """Target symbols/s of model.train.train over `seconds` of steps after `warmup` seconds."""
    marks: dict = {"t0": None, "t1": None, "targets": 0, "steps": 0}

    def on_step(info: dict, model) -> None:
        if info["seconds"] < warmup:
            return
        if marks["t0"] is None:  # the first step after the warm-up starts the clock
            marks["t0"] = info["seconds"]
            return
        marks["t1"], marks["targets"], marks["steps"] = (info["seconds"], marks["targets"] + info["targets"],
                                                         marks["steps"] + 1)

    train_names = len(split(entries, cfg.val_fraction)[0])
    # one long epoch (no validation inside the measured window), ended by the time budget
    names_needed = int(2e6)
    run = replace(cfg, epochs=1, patience=0, max_seconds=warmup + seconds,
                  samples_per_epoch=max(train_names, names_needed))
    train(entries, run, progress=False, on_step=on_step)  # batches and fused Adam as `make train`
    elapsed = (marks["t1"] or 0.0) - (marks["t0"] or 0.0)
    if elapsed <= 0:
        raise RuntimeError("the batched run made no measured steps; raise the time budget")
    return {"targets_per_s": marks["targets"] / elapsed, "targets": marks["targets"], "steps": marks["steps"],
            "seconds": elapsed}


def notebook_tensors(name: str, vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
    """The notebook's per-name tensors: one-hot inputs [T, 1, 1, V] (<s> c1 .. cn) and target
    ids [T, 1] (c1 .. cn <s>)."""
    ids = vocab.encode(name)
    inputs = torch.eye(len(vocab))[[vocab.bos_id, *ids]].view(-1, 1, 1, len(vocab))
    return inputs, torch.tensor([*ids, vocab.eos_id]).view(-1, 1)


def notebook_name_loss(model: CharRNN, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of one name, the notebook's way: one nn.RNN call per character."""
    hidden = torch.zeros(model.num_layers, 1, model.hidden_size)
    loss = torch.zeros(())
    for t in range(inputs.shape[0]):
        out, hidden = model.rnn(inputs[t], hidden)  # batch 1, one character
        loss = loss + F.cross_entropy(model.head(out[:, -1]), target[t])
    return loss


def notebook_throughput(names: list[str], vocab: Vocab, cfg: TrainConfig, seconds: float,
                        warmup: float = 0.5, seed: int = 0) -> dict:
    """Target symbols/s of the notebook loop: one name per step, one nn.RNN call per character."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    model = CharRNN(ModelConfig(len(vocab), cfg.hidden_size, cfg.num_layers, cfg.cell, cfg.dropout))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    order = list(names)
    random.Random(seed).shuffle(order)
    # like the notebook's inputTensor/targetTensor: built up front, outside the clock
    tensors = [notebook_tensors(name, vocab) for name in order]

    targets, start, end = 0, None, None
    began = time.perf_counter()
    for inputs, target in itertools.cycle(tensors):
        optimizer.zero_grad()
        (notebook_name_loss(model, inputs, target) / inputs.shape[0]).backward()
        optimizer.step()
        now = time.perf_counter()
        if start is None:
            if now - began >= warmup:
                start = now
            continue
        targets, end = targets + inputs.shape[0], now
        if end - start >= seconds:
            break
    return {"targets_per_s": targets / (end - start), "targets": targets, "seconds": end - start}


def measure(entries: list[Entry], cfg: TrainConfig, *, batch_sizes: tuple[int, ...] = (32,),
            seconds: float = 5.0, repeats: int = 3) -> dict:
    """The notebook loop and the batched loop at each batch size, `repeats` times, alternating;
    summaries of each and of the per-repetition speed-up."""
    vocab = Vocab.from_names(e.name for e in entries)
    train_names = [e.name for e in split(entries, cfg.val_fraction)[0]]
    notebook: list[float] = []
    batched: dict[int, list[float]] = {b: [] for b in batch_sizes}
    ratios: dict[int, list[float]] = {b: [] for b in batch_sizes}
    for i in range(repeats):
        nb = notebook_throughput(train_names, vocab, cfg, seconds, seed=cfg.seed + i)["targets_per_s"]
        notebook.append(nb)
        for b in batch_sizes:
            bt = batched_throughput(entries, replace(cfg, seed=cfg.seed + i, batch_size=b), seconds)
            batched[b].append(bt["targets_per_s"])
            ratios[b].append(bt["targets_per_s"] / nb)
    return {"notebook": summary(notebook),
            "batched": {str(b): summary(v) for b, v in batched.items()},
            "speedup": {str(b): summary(v) for b, v in ratios.items()},
            "target_speedup": TARGET_SPEEDUP, "seconds_per_run": seconds, "repeats": repeats,
            "config": {"cell": cfg.cell, "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers,
                       "batch_sizes": list(batch_sizes), "lr": cfg.lr,
                       "threads": cfg.threads or torch.get_num_threads(), "train_names": len(train_names)}}


def markdown(result: dict, corpus: str) -> str:
    c = result["config"]
    rows = [["notebook baseline (1 name per step, 1 nn.RNN call per character)", fmt(result["notebook"]), "1×"]]
    verdicts = []
    default = TrainConfig().batch_size
    for b in c["batch_sizes"]:
        s = result["speedup"][str(b)]
        label = f"batch {b}" + (" (the default)" if b == default else "")
        rows.append([f"project, batched, {label}", fmt(result["batched"][str(b)]), fmt(s, ".1f", "×")])
        verdicts.append(f"{label}: {s['median']:.1f}× ({'met' if s['median'] >= result['target_speedup'] else 'NOT met'})")
    return "\n".join([
        (f"Corpus `{corpus}` ({c['train_names']:,} training names); {c['cell'].upper()} {c['num_layers']}×"
        f"{c['hidden_size']}, Adam lr {c['lr']}, {c['threads']} torch thread(s) for both loops; "
        f"{result['repeats']} repetitions of {result['seconds_per_run']:g} s per loop, the loops alternating. "
        "Target symbols = characters + end token; speed-up = batched / notebook within a repetition."),
        "",
        table(["training loop", "target symbols/s: median (min–max, n)", "speed-up: median (min–max, n)"], rows),
        "",
        f"Target ≥ {result['target_speedup']:g}×: " + "; ".join(verdicts) + ".",
    ])
