"""The torch stepper for the n-best search and scoring (model.nbest): any torch step
`(char [B], hidden [L, B, H]) -> (logits [B, V], hidden)` (the eager CharRNN, the TorchScript step,
the server's), on any device. States stay on the device; each step call copies only the logits
to the host, where the search keeps its frontier.

The search's array operations run on numpy when it is installed (its per-call overhead is the
smaller on these small arrays) and on torch's CPU tensors otherwise (`TorchOps`: a GPU machine
with PyTorch alone); both compute the same values by the same rules (model.nbest)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.nbest import ArrayOps, NumpyOps, numpy_ops

DTYPES = {"float": torch.float64, "bool": torch.bool, "int": torch.int64}


class TorchOps(ArrayOps):
    """model.nbest.ArrayOps on CPU torch tensors (float64 where the search sums)."""

    def array(self, values, dtype):
        return torch.tensor(values, dtype=DTYPES[dtype])

    def log_softmax(self, logits, first, eos_id):
        x = torch.as_tensor(logits).to(torch.float64, copy=True)  # a copy: the end token's column may be masked
        first = torch.tensor(list(first), dtype=torch.bool)
        if bool(first.any()):
            x[first, eos_id] = float("-inf")
        top = x.max(dim=1, keepdim=True).values
        return x - (top + torch.log(torch.exp(x - top).sum(dim=1, keepdim=True)))

    def where(self, condition, a, b):
        return torch.where(condition, a, torch.as_tensor(b, dtype=a.dtype))

    def argsort_stable(self, x):
        return torch.sort(x, dim=1, stable=True).indices

    def take(self, x, index):
        return torch.gather(x, 1, index)


def default_ops() -> ArrayOps:
    """numpy's operations when numpy is installed, else torch's."""
    try:
        return numpy_ops()
    except ModuleNotFoundError:
        return TorchOps()


class TorchStepper:
    def __init__(self, step, hidden_shape: tuple[int, int], device: torch.device | str = "cpu",
                 ops: ArrayOps | None = None):
        self.step, self.hidden_shape, self.device = step, tuple(hidden_shape), torch.device(device)
        self.ops = ops if ops is not None else default_ops()
        # the logits on the host in the form the ops take
        self._host = (lambda t: t.float().cpu().numpy()) if isinstance(self.ops, NumpyOps) else (lambda t: t.float().cpu())

    def root(self) -> torch.Tensor:
        return torch.zeros(self.hidden_shape, device=self.device)

    @torch.inference_mode()
    def __call__(self, tokens: Sequence[int], states: Sequence[torch.Tensor]):
        token = torch.tensor(list(tokens), dtype=torch.long, device=self.device)
        logits, hidden = self.step(token, torch.stack(list(states), dim=1))
        return self._host(logits), list(hidden.unbind(1))

    def zeros(self, batch: int) -> torch.Tensor:
        return torch.zeros(self.hidden_shape[0], batch, self.hidden_shape[1], device=self.device)

    @torch.inference_mode()
    def run(self, tokens, hidden: torch.Tensor):
        """The step itself on a batched state: (logits [B, V] on the host, hidden on the device)."""
        logits, hidden = self.step(torch.as_tensor(tokens, dtype=torch.long, device=self.device), hidden)
        return self._host(logits), hidden
