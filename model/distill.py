"""Distillation: a single model trained on a teacher's next-character distributions.

The teacher (an ensemble's checkpoint, typically: model.ensemble) is run once over every
training name before training starts; its probabilities at each position become the soft
targets that model.train.batch_loss compares the student's log-probabilities with (cross-entropy
against a distribution: the teacher's entropy plus the KL divergence, so the student's training
loss never falls below the teacher's entropy). Validation still scores the names' real next
characters, so a student's validation NLL compares with any model's.

The teacher must have been trained on the same names with the same split: otherwise its
distributions would carry the student's validation names into its training.
"""

from __future__ import annotations

import torch

from core.vocab import Vocab
from model.checkpoint import CheckpointError, load_checkpoint


class TeacherError(ValueError):
    """A teacher checkpoint that cannot teach this run; the message names it and says why."""


@torch.no_grad()
def teacher_targets(path: str, cfg, vocab: Vocab, train_names: int, val_names: int, data,
                    batch_size: int = 1024) -> tuple[torch.Tensor, str]:
    """The teacher's next-character probabilities at every position of `data` (the encoded
    training names): float32 [names, positions, vocab], rows past a name's end unused; and the
    teacher's fingerprint, which the student's checkpoint records (the path alone could later
    hold another training run)."""
    try:
        teacher, teacher_vocab, ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise TeacherError(f"teacher: {exc}") from None
    if teacher_vocab.symbols != vocab.symbols:
        raise TeacherError(f"teacher {path}: its vocabulary differs from this corpus's "
                           f"({len(teacher_vocab)} against {len(vocab)} symbols): train it on the same names")
    args, metrics = ckpt.get("train_args") or {}, ckpt.get("metrics") or {}
    if args.get("val_fraction") != cfg.val_fraction or (metrics.get("train_names"), metrics.get("val_names")) != (
            train_names, val_names):
        raise TeacherError(
            f"teacher {path}: trained on another split (val_fraction {args.get('val_fraction')}, "
            f"{metrics.get('train_names')} training / {metrics.get('val_names')} validation names; this run: "
            f"{cfg.val_fraction}, {train_names} / {val_names}): it may have seen this run's validation names")
    teacher.eval()
    rows, width = data.inputs.shape
    out = torch.empty(rows, width, len(vocab), dtype=torch.float32)
    for start in range(0, rows, batch_size):
        logits, _ = teacher(data.inputs[start : start + batch_size])
        out[start : start + batch_size] = torch.softmax(logits, dim=-1)
    return out, ckpt["fingerprint"]
