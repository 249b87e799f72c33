"""The tanh RNN's decoding step with fewer operators, for bulk decoding (model.names).

`CharRNN.step` (and its TorchScript export, `as_step`) looks up layer 0's input projection as
column `char` of W_ih, then adds b_ih and b_hh per row. Those are per-symbol constants, so
`TableStep` reads the same weights (`CharRNN.cell_weights()`) and adds them once into a [V, H]
table, `((W_ih^T + b_ih) + b_hh)`: the same float additions in the same order, hence the same
values, then runs the same matrix products and tanh. A step of this small model is a handful of
operators, and these three (and the strided lookup) are a large share of it. Its outputs equal
the module's bit for bit (tests/test_table_step.py feeds both the same inputs for every model
variant); a GRU, or a module not laid out like CharRNN (an ensemble, model.ensemble, of any
cells), keeps its own step (`TableStep.of` returns None).
"""

from __future__ import annotations

import torch


class TableStep:
    """`(char [B], hidden [L, B, H]) -> (logits [B, V], hidden)`, as the module's step."""

    def __init__(self, layers: list[tuple[torch.Tensor, ...]], head_weight: torch.Tensor, head_bias: torch.Tensor):
        self.layers, self.head_weight_t, self.head_bias = layers, head_weight.t(), head_bias

    @classmethod
    @torch.inference_mode()
    def of(cls, module) -> TableStep | None:
        """For a CharRNN or its TorchScript export with a tanh cell; None for anything else (a GRU;
        an ensemble, which has neither `is_gru` nor `cell_weights`)."""
        if getattr(module, "is_gru", True) or not hasattr(module, "cell_weights"):
            return None
        weights = [w.detach() for w in module.cell_weights()]  # what step() reads, as step() reads it
        head = getattr(module, "head", None)
        if len(weights) != 4 * int(module.num_layers) or getattr(head, "bias", None) is None:
            return None  # a cell or head without biases is not laid out like CharRNN
        layers = []
        for layer in range(int(module.num_layers)):
            w_ih, w_hh, b_ih, b_hh = weights[4 * layer: 4 * layer + 4]
            if layer == 0:  # the lookup, as step(): (W_ih^T[char] + b_ih) + b_hh, for every char at once
                layers.append((((w_ih.t() + b_ih) + b_hh).contiguous(), w_hh.t()))
            else:
                layers.append((w_ih.t(), b_ih, b_hh, w_hh.t()))
        return cls(layers, head.weight.detach(), head.bias.detach())

    def __call__(self, char: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = []
        x = None
        for layer, weights in enumerate(self.layers):
            if layer == 0:
                table, w_hh_t = weights
                gi = torch.index_select(table, 0, char)
            else:
                w_ih_t, b_ih, b_hh, w_hh_t = weights
                gi = torch.addmm(b_ih, x, w_ih_t) + b_hh
            x = torch.addmm(gi, hidden[layer], w_hh_t)
            x = torch.tanh(x, out=x)
            out.append(x)
        hidden_out = out[0].unsqueeze(0) if len(out) == 1 else torch.stack(out)
        return torch.addmm(self.head_bias, x, self.head_weight_t), hidden_out
