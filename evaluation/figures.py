"""PNG figures of the report (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import math
from pathlib import Path

from core.atomic import atomic_path

VISIBLE = {" ": "␣", "-": "‐", "'": "’"}  # tick labels for characters that would be hard to see


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    _plt().close(fig)


def compare_bars(path: Path, samples: dict, corpus: dict, *, xlabel: str, title: str,
                 corpus_label: str = "corpus") -> None:
    """Side-by-side bars of two share distributions over the same keys."""
    plt = _plt()
    keys = sorted(set(samples) | set(corpus))
    x = range(len(keys))
    width = 0.42
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(keys) + 2), 3.6), dpi=120)
    ax.bar([i - width / 2 for i in x], [corpus.get(k, 0.0) for k in keys], width, label=corpus_label)
    ax.bar([i + width / 2 for i in x], [samples.get(k, 0.0) for k in keys], width, label="samples")
    ax.set_xticks(list(x), [VISIBLE.get(k, str(k)) for k in keys])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def loss_curves(path: Path, history: list[dict], bigram_val: float | None = None) -> None:
    """Training and validation loss per epoch (each member's, for an ensemble), with the bigram's
    validation NLL for reference."""
    from model.train import history_by_member

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    marker = "o" if len(history) <= 30 else None  # a short run (e.g. a few long epochs) still shows
    for label, rows in history_by_member(history):
        epochs = [r["epoch"] for r in rows]
        ax.plot(epochs, [r["train_loss"] for r in rows], label=f"{label}train", marker=marker)
        if not all(math.isnan(r["val_loss"]) for r in rows):
            ax.plot(epochs, [r["val_loss"] for r in rows], label=f"{label}validation", marker=marker)
    scored = [r for r in history if not math.isnan(r["val_loss"])]
    if scored and "member" not in history[0]:
        best = min(scored, key=lambda r: r["val_loss"])
        ax.axvline(best["epoch"], color="gray", linestyle=":", label=f"best epoch ({best['epoch']})")
    if bigram_val is not None:
        ax.axhline(bigram_val, color="gray", linestyle="--", label="bigram (validation)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL (nats / symbol)")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)
