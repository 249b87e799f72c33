"""The torch stepper for the n-best search and scoring (model.nbest): any torch step
`(char [B], hidden [L, B, H]) -> (logits [B, V], hidden)` (the eager CharRNN, the TorchScript step,
the server's), on any device. States stay on the device; each step call copies only the logits
to the host, where the search keeps its frontier."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class TorchStepper:
    def __init__(self, step, hidden_shape: tuple[int, int], device: torch.device | str = "cpu"):
        self.step, self.hidden_shape, self.device = step, tuple(hidden_shape), torch.device(device)

    def root(self) -> torch.Tensor:
        return torch.zeros(self.hidden_shape, device=self.device)

    @torch.inference_mode()
    def __call__(self, tokens: Sequence[int], states: Sequence[torch.Tensor]):
        token = torch.tensor(list(tokens), dtype=torch.long, device=self.device)
        logits, hidden = self.step(token, torch.stack(list(states), dim=1))
        return logits.float().cpu().numpy(), list(hidden.unbind(1))

    def zeros(self, batch: int) -> torch.Tensor:
        return torch.zeros(self.hidden_shape[0], batch, self.hidden_shape[1], device=self.device)

    @torch.inference_mode()
    def run(self, tokens, hidden: torch.Tensor):
        """The step itself on a batched state: (logits [B, V] on the host, hidden on the device)."""
        logits, hidden = self.step(torch.as_tensor(tokens, dtype=torch.long, device=self.device), hidden)
        return logits.float().cpu().numpy(), hidden
