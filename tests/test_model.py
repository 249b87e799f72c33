import math
from types import SimpleNamespace

import pytest
import torch

import model.train as train_module
from data.corpus import Entry
from model.charrnn import CharRNN, ModelConfig
from model.train import encode_names, length_batches, sampling_weights, train, write_history
from tests.conftest import NAMES, assert_close, tiny_config

CELLS_AND_LAYERS = [(cell, layers) for cell in ("rnn", "gru") for layers in (1, 2, 3)]


@pytest.fixture(scope="module", params=CELLS_AND_LAYERS, ids=[f"{c}-{n}" for c, n in CELLS_AND_LAYERS])
def trained(request):
    """A model of each cell and depth, trained a little on NAMES: realistic weights and states."""
    cell, layers = request.param
    model, vocab, _, _ = train([Entry(n) for n in NAMES], tiny_config(cell=cell, num_layers=layers, epochs=8),
                               progress=False)
    return model, vocab


def test_the_step_is_nn_rnn_one_position_at_a_time(trained):
    """CharRNN.step, fed real names one symbol at a time, against nn.RNN / nn.GRU itself running
    the whole padded batch (and the head on its outputs): logits and the top layer's state at
    every position, every layer's state at the end."""
    model, vocab = trained
    chars = encode_names(NAMES, vocab).inputs  # <s> name, padded with the end token
    with torch.no_grad():
        out, want_hidden = model.rnn(torch.nn.functional.one_hot(chars, len(vocab)).float())
        want_logits = model.head(out)
        hidden = model.init_hidden(len(chars))
        for t in range(chars.shape[1]):
            logits, hidden = model.step(chars[:, t], hidden)
            assert_close(logits, want_logits[:, t], f"logits at position {t}")
            assert_close(hidden[-1], out[:, t], f"top layer's state at position {t}")
        assert_close(hidden, want_hidden, "every layer's final state")
        assert float(hidden.abs().max()) > 0.5  # states that use the nonlinearity, not near-zero ones


def test_forward_is_the_sequence_and_the_exported_forward_is_the_step(trained):
    model, vocab = trained
    chars = encode_names(NAMES[:5], vocab).inputs
    hidden = torch.rand(model.num_layers, 5, model.hidden_size) * 2 - 1
    with torch.no_grad():
        logits, hidden_out = model(chars, hidden)
        out, want_hidden = model.rnn(torch.nn.functional.one_hot(chars, len(vocab)).float(), hidden)
        # exactly: forward is these very calls, on the same inputs
        assert torch.equal(logits, model.head(out)) and torch.equal(hidden_out, want_hidden)
        step = model.as_step()
        assert all(a is b for a, b in zip(step.parameters(), model.parameters()))  # shared, not copied
        scripted = torch.jit.script(step)  # what export.torchscript writes
        for module in (step, scripted):
            got = module(chars[:, 0], hidden)
            want = model.step(chars[:, 0], hidden)  # the same operators on the same shapes: exactly
            assert all(torch.equal(g, w) for g, w in zip(got, want))
    with pytest.raises(ValueError, match=r"chars \[batch, time\].*CharRNN.step"):
        model(chars[:, 0], hidden)


@pytest.mark.parametrize("cell, layers", CELLS_AND_LAYERS)
def test_cell_weights_are_the_public_parameters_in_order(cell, layers):
    """The step's one private read (nn.RNN's _flat_weights) is the documented parameters."""
    model = CharRNN(ModelConfig(vocab_size=11, hidden_size=16, num_layers=layers, cell=cell))
    want = [getattr(model.rnn, f"{kind}_l{k}") for k in range(layers)
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    got = model.cell_weights()
    assert len(got) == len(want) and all(g is w for g, w in zip(got, want))


def test_rnn_is_tanh_and_gru_is_an_option():
    assert CharRNN(ModelConfig(5)).rnn.nonlinearity == "tanh"
    assert isinstance(CharRNN(ModelConfig(5, cell="gru")).rnn, torch.nn.GRU)
    with pytest.raises(ValueError, match="cell"):
        ModelConfig(5, cell="lstm")


def test_targets_end_with_the_end_token_and_padding_is_masked():
    from core.vocab import Vocab

    vocab = Vocab.from_names(["Ana", "Bo"])
    enc = encode_names(["Ana", "Bo"], vocab)
    assert enc.inputs[1, 0] == vocab.bos_id
    assert enc.targets[1].tolist() == [*vocab.encode("Bo"), vocab.eos_id, -100]
    assert enc.lengths.tolist() == [4, 3]


def test_length_pools_keep_every_name_once_and_cut_the_padding():
    lengths = torch.tensor([len(n) + 1 for n in NAMES * 20])
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0))
    for pool in (0, 1, 4, 32):
        batches = list(length_batches(order, lengths, 8, pool, torch.Generator().manual_seed(1)))
        assert sorted(torch.cat(batches).tolist()) == sorted(order.tolist())  # each draw exactly once
        assert all(1 <= len(b) <= 8 for b in batches)
    plain = list(length_batches(order, lengths, 8, 0, torch.Generator()))
    assert [b.tolist() for b in plain] == [b.tolist() for b in order.split(8)]
    pooled = list(length_batches(order, lengths, 8, 32, torch.Generator().manual_seed(1)))

    def padded(bs):
        return sum(int(lengths[b].max()) * len(b) for b in bs)

    assert padded(pooled) < 0.85 * padded(plain)
    again = list(length_batches(order, lengths, 8, 32, torch.Generator().manual_seed(1)))
    assert [b.tolist() for b in again] == [b.tolist() for b in pooled]  # seeded


def test_training_learns_and_keeps_the_best_validation_epoch():
    _model, _vocab, metrics, history = train([Entry(n) for n in NAMES], tiny_config(epochs=30), progress=False)
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5
    best = min(history, key=lambda r: r["val_loss"])
    assert metrics["best_epoch"] == best["epoch"]
    assert metrics["best_val_loss"] == pytest.approx(best["val_loss"])
    assert metrics["train_names"] + metrics["val_names"] == len(NAMES) and metrics["val_names"] > 0


def test_training_is_reproducible_with_a_seed():
    entries = [Entry(n) for n in NAMES]
    a = train(entries, tiny_config(epochs=3), progress=False)[0].state_dict()
    b = train(entries, tiny_config(epochs=3), progress=False)[0].state_dict()
    c = train(entries, tiny_config(epochs=3, seed=1), progress=False)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # one machine, one seed: the same kernels on the same batches
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_early_stopping_and_time_budget_stop_training(monkeypatch):
    entries = [Entry(n) for n in NAMES]
    _, _, metrics, history = train(entries, tiny_config(epochs=500, patience=3, lr=0.05), progress=False)
    assert metrics["stopped_by"] == "early_stopping" and len(history) < 500
    # the budget on a clock the test moves: each optimizer step "takes" 0.1 s, so a 0.5-s budget
    # is over after the 6th step (0.6 s > 0.5 s), whatever the machine's speed
    steps = []
    monkeypatch.setattr(train_module, "time", SimpleNamespace(perf_counter=lambda: len(steps) * 0.1))
    _, _, metrics, _ = train(entries, tiny_config(epochs=100000, max_seconds=0.5), progress=False,
                             on_step=lambda info, _: steps.append(info["step"]))
    assert metrics["stopped_by"] == "max_seconds" and steps == [1, 2, 3, 4, 5, 6]
    assert metrics["seconds"] == pytest.approx(0.6)


def test_count_weighting_samples_frequent_names_more():
    entries = [Entry("Maria", 1000), Entry("Zé", 1)]
    linear = sampling_weights(entries, "linear")
    sqrt = sampling_weights(entries, "sqrt")
    assert sampling_weights(entries, "none") is None
    assert linear[0] / linear[1] == pytest.approx(1000) and sqrt[0] / sqrt[1] == pytest.approx(math.sqrt(1000))
    _, _, metrics, _ = train([Entry(n, i + 1) for i, n in enumerate(NAMES)],
                             tiny_config(epochs=2, count_weighting="sqrt"), progress=False)
    assert metrics["epochs_run"] == 2


def test_history_files_are_written(tmp_path):
    history = [{"epoch": 1, "train_loss": 2.0, "val_loss": 2.1, "seconds": 0.1, "lr": 0.01},
               {"epoch": 2, "train_loss": 1.5, "val_loss": 1.9, "seconds": 0.2, "lr": 0.01}]
    write_history(tmp_path, history)
    assert (tmp_path / "history.csv").read_text().splitlines()[0] == "epoch,train_loss,val_loss,seconds,lr"
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
