"""CharRNN: one-hot characters -> nn.RNN (tanh) or nn.GRU -> linear logits.

The same module runs a whole padded batch of names (training) and a single step
`(char [batch], hidden [layers, batch, hidden]) -> (logits [batch, vocab], hidden_out)`
(generation and every export).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

CELLS = ("rnn", "gru")


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int = 128
    num_layers: int = 1
    cell: str = "rnn"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.vocab_size < 2 or self.hidden_size < 1 or self.num_layers < 1:
            raise ValueError(f"invalid model sizes: {self}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**{k: data[k] for k in ("vocab_size", "hidden_size", "num_layers", "cell", "dropout") if k in data})


class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.vocab_size = config.vocab_size
        self.hidden_size = config.hidden_size
        self.num_layers = config.num_layers
        rnn_cls = nn.GRU if config.cell == "gru" else nn.RNN
        kwargs = {"nonlinearity": "tanh"} if config.cell == "rnn" else {}
        self.rnn = rnn_cls(
            input_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            **kwargs,
        )
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def init_hidden(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.zeros(self.num_layers, batch, self.hidden_size, device=device)

    def forward_sequence(self, chars: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """chars int64 [batch, time] -> logits [batch, time, vocab], hidden [layers, batch, hidden]."""
        x = F.one_hot(chars, self.vocab_size).to(self.head.weight.dtype)
        out, hidden = self.rnn(x, hidden)
        return self.head(out), hidden

    def forward(self, char: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: char int64 [batch], hidden [layers, batch, hidden]."""
        logits, hidden_out = self.forward_sequence(char.unsqueeze(1), hidden)
        return logits.squeeze(1), hidden_out
