"""CharRNN: one-hot characters -> nn.RNN (tanh) or nn.GRU -> linear logits.

`forward(chars [batch, time], hidden=None) -> (logits, hidden)` runs whole padded sequences
(training, evaluation), as nn.RNN does; `step(char [batch], hidden) -> (logits [batch, vocab],
hidden_out)` is one exact step on the same weights (generation and every export, through
`as_step()`, whose forward is the step).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.config import CELLS


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
        self.is_gru = config.cell == "gru"

    def init_hidden(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.zeros(self.num_layers, batch, self.hidden_size, device=device)

    def forward(self, chars: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """chars int64 [batch, time] -> (logits [batch, time, vocab], hidden [layers, batch, hidden]):
        nn.RNN's contract, the whole sequence through nn.RNN / nn.GRU (training, evaluation)."""
        if chars.dim() != 2:
            raise ValueError(f"CharRNN.forward takes chars [batch, time], got shape {tuple(chars.shape)}; "
                             f"one step of chars [batch] is CharRNN.step(char, hidden)")
        x = F.one_hot(chars, self.vocab_size).to(self.head.weight.dtype)
        out, hidden = self.rnn(x, hidden)
        return self.head(out), hidden

    def step(self, char: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: char int64 [batch], hidden [layers, batch, hidden] ->
        (logits [batch, vocab], hidden_out [layers, batch, hidden]); what every export holds.

        The same weights and arithmetic as `forward`, written out for a single step: nn.RNN's
        sequence machinery costs several times the arithmetic of one step, and the exported graph
        stays plain matrix products. The one-hot input times W_ih is exactly column `char` of W_ih,
        so it is looked up, not multiplied.
        """
        weights = self.cell_weights()
        layers: list[torch.Tensor] = []
        x = hidden[0]  # replaced below; layer 0 reads `char`
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]
            h = hidden[layer]
            if layer == 0:
                gi = w_ih.t()[char] + b_ih
            else:
                gi = torch.addmm(b_ih, x, w_ih.t())
            if self.is_gru:  # PyTorch's GRU: gates r, z, candidate n
                gh = torch.addmm(b_hh, h, w_hh.t())
                i_r, i_z, i_n = gi.chunk(3, 1)
                h_r, h_z, h_n = gh.chunk(3, 1)
                r = torch.sigmoid(i_r + h_r)
                z = torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                x = n + z * (h - n)
            else:  # both biases ride on the input side: in layer 0 that all depends on char alone,
                # which the ONNX one-graph decoder turns into one table lookup (export.generate_graph)
                x = torch.tanh(torch.addmm(gi + b_hh, h, w_hh.t()))
            layers.append(x)
        return self.head(x), torch.stack(layers)

    def cell_weights(self) -> list[torch.Tensor]:
        """w_ih, w_hh, b_ih, b_hh of layer 0, then of layer 1, ...: the public parameters
        `rnn.weight_ih_l{k}` etc., as the list nn.RNN hands its own kernels.

        The one place that reads a private attribute (`_flat_weights`): TorchScript cannot look
        parameters up by a computed name (getattr(rnn, f"weight_ih_l{k}")), and this list is what
        nn.RNN keeps for exactly that. tests/test_model.py checks it is the public parameters, in
        this order, for every cell and layer count, so a torch release that changes it fails there.
        """
        return self.rnn._flat_weights

    def as_step(self) -> CharRNNStep:
        """This model with `forward` = `step`, on the same parameters: what the exporters script
        and trace (the TorchScript and ONNX files' forward is the single step)."""
        step = CharRNNStep(self.config)
        step.rnn, step.head = self.rnn, self.head  # shared, not copied
        return step.train(self.training)


class CharRNNStep(CharRNN):
    """A CharRNN whose forward is the single step. A subclass, not a wrapper holding the model, so
    the exported files keep the parameter names (`rnn.*`, `head.*`) and nothing but the step."""

    def forward(self, char: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.step(char, hidden)
