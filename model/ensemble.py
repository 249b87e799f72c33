"""An ensemble of CharRNNs as one recurrent step, with CharRNN's interface and contract.

`step(char [batch], hidden [layers, batch, sum of the members' sizes]) -> (logits [batch, vocab],
hidden_out)`: the hidden state holds the members' states side by side (member 0's units first),
and the logits are the log of the members' mean next-character probabilities,
log(1/K sum_k softmax(logits_k)). They are normalised log-probabilities, so every consumer that
takes a softmax, an argmax or a log-softmax of the logits (greedy, sampling, n-best, the
one-graph decoder) reads the ensemble's distribution unchanged, and the exports are the same
single step with a wider hidden state.

Temperature: consumers divide the logits by T before the softmax, so an ensemble samples from
p_ens(c)^(1/T), renormalised: the temperature sharpens or flattens the averaged distribution,
not each member's before averaging. T = 1 is the ensemble's own distribution; greedy (T = 0)
takes its argmax.

Members must share the vocabulary and the number of layers (the state is [layers, batch, ...]);
their cells and sizes may differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from model.charrnn import CharRNN, ModelConfig


@dataclass(frozen=True)
class EnsembleConfig:
    members: tuple[ModelConfig, ...]

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(self.members)}")
        for field in ("vocab_size", "num_layers"):
            values = {getattr(m, field) for m in self.members}
            if len(values) != 1:
                raise ValueError(f"ensemble members differ in {field}: {sorted(values)}")

    @property
    def vocab_size(self) -> int:
        return self.members[0].vocab_size

    @property
    def num_layers(self) -> int:
        return self.members[0].num_layers

    @property
    def hidden_size(self) -> int:
        return sum(m.hidden_size for m in self.members)

    @property
    def cell(self) -> str:
        """The members' cell, or "mixed" when they differ."""
        cells = {m.cell for m in self.members}
        return cells.pop() if len(cells) == 1 else "mixed"

    def to_dict(self) -> dict:
        return {"members": [m.to_dict() for m in self.members]}


def config_from_dict(data: dict) -> ModelConfig | EnsembleConfig:
    """A checkpoint's `config`: an ensemble's when it lists members, else a single model's."""
    if "members" in data:
        members = data["members"]
        if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
            raise ValueError("config 'members' must be a list of model configs")
        return EnsembleConfig(tuple(ModelConfig.from_dict(m) for m in members))
    return ModelConfig.from_dict(data)


def build_model(config: ModelConfig | EnsembleConfig) -> CharRNN | CharRNNEnsemble:
    return CharRNNEnsemble(config) if isinstance(config, EnsembleConfig) else CharRNN(config)


def members_of(model: CharRNN | CharRNNEnsemble) -> list[CharRNN]:
    """The single models a model averages: its members, or itself."""
    return list(model.members) if isinstance(model, CharRNNEnsemble) else [model]


class CharRNNEnsemble(nn.Module):
    def __init__(self, config: EnsembleConfig, members: list[CharRNN] | None = None):
        super().__init__()
        self.config = config
        if members is None:
            members = [CharRNN(c) for c in config.members]
        if [m.config for m in members] != list(config.members):
            raise ValueError("ensemble members do not match its config")
        self.members = nn.ModuleList(members)
        self.vocab_size = config.vocab_size
        self.hidden_size = config.hidden_size
        self.num_layers = config.num_layers
        self.sizes = [m.hidden_size for m in config.members]  # each member's slice of the state
        self.log_k = math.log(len(members))

    @classmethod
    def of(cls, members: list[CharRNN]) -> CharRNNEnsemble:
        """The ensemble of these trained models (shared, not copied)."""
        return cls(EnsembleConfig(tuple(m.config for m in members)), members)

    def init_hidden(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.zeros(self.num_layers, batch, self.hidden_size, device=device)

    def _mean(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """log of the mean of the members' softmaxes, along a new leading axis."""
        stacked = torch.stack([torch.log_softmax(x, dim=-1) for x in logits])
        return torch.logsumexp(stacked, dim=0) - self.log_k

    def forward(self, chars: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """chars int64 [batch, time] -> (log mean probabilities [batch, time, vocab], hidden):
        CharRNN.forward's contract (training of a student, evaluation)."""
        states = [None] * len(self.sizes) if hidden is None else hidden.split(self.sizes, dim=2)
        outs = [member(chars, state) for member, state in zip(self.members, states)]
        return self._mean([o[0] for o in outs]), torch.cat([o[1] for o in outs], dim=2)

    def step(self, char: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of every member on its slice of `hidden`: CharRNN.step's contract."""
        states = hidden.split(self.sizes, dim=2)
        logits: list[torch.Tensor] = []
        outs: list[torch.Tensor] = []
        for i, member in enumerate(self.members):
            x, h = member.step(char, states[i])
            logits.append(x)
            outs.append(h)
        return self._mean(logits), torch.cat(outs, dim=2)

    def as_step(self) -> CharRNNEnsembleStep:
        """This ensemble with `forward` = `step`, on the same members (what the exporters take)."""
        # the members' own steps too: scripting compiles every submodule's forward
        step = CharRNNEnsembleStep(self.config, [m.as_step() for m in self.members])
        return step.train(self.training)


class CharRNNEnsembleStep(CharRNNEnsemble):
    """A CharRNNEnsemble whose forward is the single step (the exported files hold nothing else)."""

    def forward(self, char: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.step(char, hidden)
