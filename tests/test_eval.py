"""The model-quality report: bigram baseline, sample novelty, and the whole report on a tiny model."""

import json
import math

import numpy as np
import pytest

from core.vocab import Vocab
from evaluation.__main__ import main as eval_main
from evaluation.bigram import Bigram, choose_alpha
from evaluation.report import EvalError, load_inputs, novelty, shares, total_variation
from model.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import NAMES, assert_close
from tools.result_page import MARKER


def test_bigram_nll_equals_a_hand_computation():
    vocab = Vocab.from_names(["ab", "b"])  # <s>, a, b
    bigram = Bigram.fit(["ab", "b"], vocab, alpha=0.5)
    # counts: <s> -> a 1, b 1; a -> b 1; b -> <s> 2. Rows smoothed over V = 3 symbols.
    assert bigram.counts.tolist() == [[0, 1, 1], [0, 0, 1], [2, 0, 0]]
    expected = -(math.log(1.5 / 3.5) + math.log(1.5 / 2.5) + math.log(2.5 / 3.5))  # <s>a, ab, b<s>
    total, symbols = bigram.nll(["ab"], vocab)
    assert symbols == 3 and total == pytest.approx(expected, rel=1e-12)
    total, symbols = bigram.nll(["ba"], vocab)  # <s>b, ba (unseen), a<s> (unseen)
    assert total == pytest.approx(-(math.log(1.5 / 3.5) + math.log(0.5 / 3.5) + math.log(0.5 / 2.5)))
    assert np.exp(bigram.log_probs()).sum(axis=1).tolist() == pytest.approx([1, 1, 1])


def test_alpha_is_the_grid_value_with_the_lowest_validation_nll():
    vocab = Vocab.from_names(NAMES)
    train, val = NAMES[::2], NAMES[1::2]
    alpha, scores = choose_alpha(train, val, vocab, grid=(0.01, 0.1, 1.0))
    brute = {a: Bigram.fit(train, vocab, a).nll(val, vocab) for a in (0.01, 0.1, 1.0)}
    assert scores == pytest.approx({a: t / n for a, (t, n) in brute.items()})
    assert alpha == min(scores, key=scores.get)


def test_novelty_counts_copies_and_new_names_per_sample_and_per_name():
    samples = ["Ana", "Ana", "Bia", "Caio", "Zeca", "Zeca", "Zeca", "Xuxa"]
    out = novelty(samples, train_names=["Ana", "Bia", "Davi"], val_names=["Caio"], top=2)
    assert (out["train"], out["val"], out["new"]) == (3, 1, 4)
    assert (out["train_distinct"], out["val_distinct"], out["new_distinct"], out["distinct"]) == (2, 1, 2, 5)
    assert out["train_share"] == 3 / 8 and out["new_share"] == 0.5
    assert out["top_new"] == [["Zeca", 3], ["Xuxa", 1]]


def test_shares_and_total_variation():
    assert shares([3, 3, 4], weights=[1, 1, 2]) == {3: 0.5, 4: 0.5}
    assert total_variation({"A": 1.0}, {"A": 0.5, "B": 0.5}) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "names.txt"
    path.write_text("".join(f"{n}\n" for n in NAMES), encoding="utf-8")
    return path


def test_report_of_the_tiny_model_has_every_section_and_figure(tiny_artifacts, corpus_file, tmp_path):
    out, page = tmp_path / "report", tmp_path / "results" / "eval-tiny.md"
    eval_main(["--checkpoint", str(tiny_artifacts.checkpoint), "--corpus", str(corpus_file),
               "--val-fraction", "0.15", "--out-dir", str(out), "--page", str(page)])
    md = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Likelihood", "## Samples: 1,000 names at temperature 1, seed 0", "## Distributions",
                    "## Loss curves", "## Greedy names by first letter", "most frequent new names"):
        assert heading in md
    for png in ("lengths.png", "first_letters.png", "loss_curves.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and f"]({png})" in md
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    _, _, ckpt = load_checkpoint(tiny_artifacts.checkpoint)
    val = rep["likelihood"]["model"]["val"]
    # the report's validation NLL is the one training measured on the same split (in other
    # batches, so by the parity rule)
    assert_close(val["nats_per_symbol"], ckpt["metrics"]["best_val_loss"], "validation NLL")
    assert val["bits_per_symbol"] == pytest.approx(val["nats_per_symbol"] / math.log(2))
    assert val["names"] == ckpt["metrics"]["val_names"]
    assert rep["likelihood"]["bigram"]["val"]["symbols"] == val["symbols"]
    nov = rep["samples"]["novelty"]
    assert nov["samples"] == 1000 == nov["train"] + nov["val"] + nov["new"]
    assert len((out / "samples.txt").read_text(encoding="utf-8").splitlines()) == 1000
    assert [row[0] for row in rep["greedy"]] == sorted({n[0] for n in NAMES})
    assert md.count("\n| ") > 30  # the tables are there
    # the result page (make eval -> docs/results/eval-<preset>.md): the same report, stamped, figures beside it
    text = page.read_text(encoding="utf-8")
    assert text.startswith(MARKER) and "Command: `python -m evaluation --checkpoint" in text
    assert f"**Validation NLL: {val['nats_per_symbol']:.4f} nats/symbol" in text and "Measured 20" in text
    for png in ("lengths.png", "first_letters.png", "loss_curves.png"):
        assert f"](eval-tiny/{png})" in text and (page.parent / "eval-tiny" / png).read_bytes() == (out / png).read_bytes()


def test_report_is_reproducible_with_its_seed(tiny_artifacts, corpus_file, tmp_path):
    args = ["--checkpoint", str(tiny_artifacts.checkpoint), "--corpus", str(corpus_file), "--val-fraction", "0.15",
            "--samples", "50"]
    eval_main([*args, "--out-dir", str(tmp_path / "a")])
    eval_main([*args, "--out-dir", str(tmp_path / "b")])
    assert (tmp_path / "a" / "samples.txt").read_text() == (tmp_path / "b" / "samples.txt").read_text()


def test_split_and_corpus_come_from_the_checkpoint_and_are_checked(tiny_artifacts, corpus_file, tmp_path):
    model, vocab, ckpt = load_checkpoint(tiny_artifacts.checkpoint)
    with pytest.raises(EvalError, match="does not name its corpus"):
        load_inputs(tiny_artifacts.checkpoint)
    with pytest.raises(EvalError, match="not the corpus or settings"):
        load_inputs(tiny_artifacts.checkpoint, corpus_file, val_fraction=0.5)
    with_args = tmp_path / "checkpoint.pt"
    save_checkpoint(with_args, model, vocab, metrics=ckpt["metrics"], history=ckpt["history"],
                    train_args={"corpus": str(corpus_file), "val_fraction": 0.15, "title_case": False})
    inputs = load_inputs(with_args)
    assert inputs.corpus == corpus_file and len(inputs.val) == ckpt["metrics"]["val_names"]
    other = tmp_path / "other.txt"
    other.write_text("".join(f"{n}\n" for n in NAMES[:-1]) + "Ωmega\n", encoding="utf-8")
    with pytest.raises(EvalError):
        load_inputs(with_args, other)


def test_per_person_nll_weights_each_name_by_its_count(tiny_artifacts):
    import torch

    from evaluation.report import model_nats_per_name, person_nll
    from model.nbest import score
    from model.nbest_torch import TorchStepper

    model, vocab, _ = load_checkpoint(tiny_artifacts.checkpoint)
    names = ["Ana", "Bruno", "Zoe"]
    nats = model_nats_per_name(model, vocab, names)
    # each name's NLL is its log-probability under the n-best definition (model.nbest.score)
    logp = score(TorchStepper(model.step, (model.num_layers, model.hidden_size)), [vocab.encode(n) for n in names],
                 bos_id=vocab.bos_id, eos_id=vocab.eos_id)
    with torch.no_grad():
        first = model(torch.tensor([[vocab.bos_id]]))[0][0, 0].double().softmax(0)
    # score() excludes the end token at the first position; the training loss does not
    # the step (TorchStepper) against nn.RNN over whole names: the parity rule
    assert_close([-x for x in logp], [n + math.log(1 - float(first[vocab.eos_id])) for n in nats], "NLL per name")
    counts = [10, 1, 1]
    per_person = person_nll(nats, names, counts)
    symbols = 10 * 4 + 6 + 4
    assert per_person["nats_per_symbol"] == pytest.approx((10 * nats[0] + nats[1] + nats[2]) / symbols)
    assert per_person["bits_per_name"] == pytest.approx((10 * nats[0] + nats[1] + nats[2]) / 12 / math.log(2))
    assert per_person["people"] == 12 and per_person["names"] == 3
    assert person_nll(nats, names, [1, 1, 1])["nats_per_symbol"] == pytest.approx(sum(nats) / (4 + 6 + 4))
