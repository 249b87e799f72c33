"""`decode`: a list of rows in, each row's symbol ids out, through the one torch decoding loop
(model.chunked, run eagerly over exactly these rows).

Used by the eager and TorchScript generators, the server's CPU path, evaluation and the export
checks. Each row has its own prefix, length cap, temperature, top-k and seed (core.request.Row);
the step is any callable `(char [B], hidden [L, B, H]) -> (logits [B, V], hidden)`. Rows never
influence each other: a row decodes the same alone or in any batch, except at a near-tie
(docs/numerics.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from core.request import Row
from model.choose import Chooser, Start, Step
from model.chunked import ChunkedDecoder

__all__ = ["Chooser", "Start", "Step", "decode"]


def decode(step: Step, rows: Sequence[Row], *, bos_id: int, eos_id: int, hidden_shape: tuple[int, int],
           device: torch.device | str = "cpu", start: Start | None = None,
           on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> list[list[int]]:
    """Decode `rows`; returns each row's symbol ids (prefix included, end token excluded).

    hidden_shape: (num_layers, hidden_size) of the step. start: where each row starts (a session
    continuing a name). on_step(t, ids [B], active [B]) is called after each step with the
    symbols just chosen and which of them extend a name (streaming); reading them forces a host
    sync per step, so leave it None on GPU. The step sees every row at every step until all have
    ended (no gathering of live rows), so a step wrapper may record each step's whole batch.
    """
    if not rows:
        return []
    decoder = ChunkedDecoder(step, bos_id=bos_id, eos_id=eos_id, hidden_shape=hidden_shape, device=device,
                             buckets=(len(rows),), max_steps=max(r.max_length for r in rows),
                             max_prefix=max(len(r.prefix) for r in rows), capture=False, compact=False)
    return decoder.decode(rows, start=start, on_step=on_step)
