"""model.table_step.TableStep: the tanh RNN's step with its input projection looked up in a
table must give the module's own outputs bit for bit (bulk names depend on it), for every model
variant and for the TorchScript export; a GRU, or an ensemble (members of any cell), keeps its
own step."""

import torch

from model.charrnn import CharRNN
from model.checkpoint import load_checkpoint
from model.table_step import TableStep
from model.torchscript import load_torchscript


def _inputs(vocab_size, layers, hidden, rows=300):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab_size, (rows,), generator=gen), torch.randn(layers, rows, hidden, generator=gen)


def test_the_table_step_equals_the_modules_step_exactly(variant_artifacts):
    eager = load_checkpoint(variant_artifacts.checkpoint)[0]
    scripted = load_torchscript(variant_artifacts.torchscript)[0]
    tabulated = isinstance(eager, CharRNN) and eager.config.cell == "rnn"
    for module, step in ((eager, eager.step), (scripted, scripted)):
        table = TableStep.of(module)
        if not tabulated:
            assert table is None
            continue
        char, hidden = _inputs(eager.vocab_size, eager.num_layers, eager.hidden_size)
        with torch.inference_mode():
            for _ in range(3):  # a few chained steps: the hidden state fed back
                want_logits, want_hidden = step(char, hidden)
                logits, got_hidden = table(char, hidden)
                assert torch.equal(logits, want_logits) and torch.equal(got_hidden, want_hidden)
                hidden, char = want_hidden, want_logits.argmax(1)
