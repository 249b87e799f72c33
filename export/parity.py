"""Check an exported step against the eager model before it may be written."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from model.charrnn import CharRNN

TOLERANCE = 1e-5
BATCH_SIZES = (1, 3, 64)


class ExportMismatch(RuntimeError):
    pass


def random_inputs(model: CharRNN, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    char = torch.randint(0, model.vocab_size, (batch,), generator=generator)
    hidden = torch.randn(model.num_layers, batch, model.hidden_size, generator=generator)
    return char, hidden


def max_difference(model: CharRNN, run: Callable[[torch.Tensor, torch.Tensor], tuple[np.ndarray, np.ndarray]],
                   batch_sizes=BATCH_SIZES, seed: int = 0) -> float:
    """Largest absolute difference in logits or hidden between eager and `run` on random inputs."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.inference_mode():
        for batch in batch_sizes:
            char, hidden = random_inputs(model, batch, generator)
            want_logits, want_hidden = model(char, hidden)
            got_logits, got_hidden = run(char, hidden)
            for want, got in ((want_logits, got_logits), (want_hidden, got_hidden)):
                got = np.asarray(got)
                if got.shape != tuple(want.shape):
                    raise ExportMismatch(f"shape {got.shape} != eager {tuple(want.shape)} at batch {batch}")
                worst = max(worst, float(np.abs(got - want.numpy()).max()))
    return worst


def check(model: CharRNN, run, what: str) -> float:
    diff = max_difference(model, run)
    if not diff <= TOLERANCE:
        raise ExportMismatch(f"{what} differs from eager by {diff:.3g} (> {TOLERANCE}); not written")
    return diff
