"""`make eval` of an ensemble and of a distilled student: the report, the page and the card say what
the model is, and the comparison (evaluation.compare) puts the best single model, the ensemble and
the student side by side with the report's own definitions. Tiny members trained in seconds."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from core.model_card import front_matter
from data.corpus import read_corpus, split
from evaluation import compare
from evaluation.__main__ import main as eval_main
from evaluation.report import load_inputs, model_nats_per_name, person_nll
from model.checkpoint import load_checkpoint, save_checkpoint
from model.decode import decode
from model.ensemble import CharRNNEnsemble
from model.generate import TorchGenerator
from model.train import encode_names, evaluate, train
from tests.conftest import NAMES, assert_close, tiny_config

WEIGHTINGS = ("sqrt", "none")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A counted corpus; an ensemble of two tiny RNNs saved as model.members saves one (metrics,
    history rows naming their member, train_args); a student distilled from it by model.train."""
    root = tmp_path_factory.mktemp("ensemble")
    corpus = root / "names.tsv"
    corpus.write_text("name\tcount\n" + "".join(f"{n}\t{1 + (7 * i) % 13}\n" for i, n in enumerate(NAMES)),
                      encoding="utf-8")
    entries = read_corpus(corpus)
    runs = []
    for i, weighting in enumerate(WEIGHTINGS):
        cfg = tiny_config(corpus=str(corpus), seed=i, count_weighting=weighting, epochs=6 + 4 * i)
        runs.append((cfg, *train(entries, cfg, progress=False)))
    ensemble = CharRNNEnsemble.of([r[1] for r in runs]).eval()
    vocab = runs[0][2]
    train_entries, val_entries = split(entries, 0.15)
    members = [{**r[3], "seed": r[0].seed, "count_weighting": r[0].count_weighting} for r in runs]
    metrics = {"best_val_loss": evaluate(ensemble, encode_names([e.name for e in val_entries], vocab),
                                         torch.device("cpu")),
               "members": members, "best_member_val_loss": min(m["best_val_loss"] for m in members),
               "seconds": max(m["seconds"] for m in members), "stopped_by": members[0]["stopped_by"],
               "train_names": len(train_entries), "val_names": len(val_entries),
               "parameters": sum(p.numel() for p in ensemble.parameters())}
    history = [{"member": i, **row} for i, r in enumerate(runs) for row in r[4]]
    ens_path = root / "ensemble" / "checkpoint.pt"
    ens_path.parent.mkdir()
    args = asdict(tiny_config(corpus=str(corpus), members=2, member_weightings=",".join(WEIGHTINGS)))
    save_checkpoint(ens_path, ensemble, vocab, metrics=metrics, history=history, train_args=args)
    student_cfg = tiny_config(corpus=str(corpus), teacher=str(ens_path), epochs=6)
    model, svocab, smetrics, shistory = train(entries, student_cfg, progress=False)
    student_path = root / "student" / "checkpoint.pt"
    student_path.parent.mkdir()
    save_checkpoint(student_path, model, svocab, metrics=smetrics, history=shistory, train_args=asdict(student_cfg))
    return {"root": root, "corpus": corpus, "ensemble": ens_path, "student": student_path, "metrics": metrics}


def run_eval(checkpoint: Path, out: Path, *extra: str) -> tuple[dict, str, str, str]:
    """python -m evaluation with its page and card: (report.json, report.md, page, card)."""
    page, card = out / "results" / "eval-x.md", out / "model_card.md"
    eval_main(["--checkpoint", str(checkpoint), "--out-dir", str(out / "report"), "--samples", "20",
               "--page", str(page), "--card", str(card), "--compare-repeats", "2", *extra])
    read = lambda p: p.read_text(encoding="utf-8")
    return (json.loads(read(out / "report" / "report.json")), read(out / "report" / "report.md"), read(page),
            read(card))


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start: end if end != -1 else len(text)]


def test_an_ensembles_report_page_and_card_say_it_is_an_ensemble(trained, tmp_path, capsys):
    rep, md, page, card = run_eval(trained["ensemble"], tmp_path)
    members = trained["metrics"]["members"]
    assert rep["model"]["label"] == "ensemble of 2 RNN 1×24" and rep["model"]["members"] == 2
    assert rep["model"]["hidden_size"] == 48 and len(rep["model"]["member_configs"]) == 2
    assert page.splitlines()[1].startswith("# Model quality: ensemble of 2 RNN 1×24 on ")
    for text in (md, page):
        assert "an ensemble of 2 RNN 1×24" in text and "averages their next-character probabilities" in text
        assert "best epoch None" not in text and "None of None" not in text
        for i, m in enumerate(members):
            assert (f"member {i} (seed {i}, count weighting {WEIGHTINGS[i]}): best epoch {m['best_epoch']} of "
                    f"{m['epochs_run']}, validation loss {m['best_val_loss']:.4f}") in text
        assert f"| ensemble, validation | {rep['likelihood']['model']['val']['nats_per_symbol']:.4f} |" in text
        assert "count weighting in training: the members': sqrt (member 0), none (member 1)." in text
        assert "Corpus: every distinct name, weighted as member 0 was trained (sqrt)." in text
    # the card: what an ensemble is and costs, each member's run
    assert "CharRNN name generator, ensemble of 2 RNN 1×24 (" in card
    model_type = next(line for line in card.splitlines() if line.startswith("- **Model type:**"))
    assert "an ensemble of 2 RNN 1×24 networks" in model_type
    assert "averages the 2 members' next-character probabilities" in model_type and "costs 2×" in model_type
    assert "ensemble" in front_matter(card)["tags"] and "1 layer(s) of 48" not in card
    for i, m in enumerate(members):
        assert f"| member {i} | seed {i}, count weighting {WEIGHTINGS[i]}, best epoch {m['best_epoch']}" in card
    assert "sqrt: names are drawn" in card and "none: every distinct spelling" in card
    # the comparison: the members, the best of them marked, and the ensemble
    models = rep["comparison"]["models"]
    assert [m["role"] for m in models] == ["member", "member", "ensemble"]
    best = min(range(2), key=lambda i: members[i]["best_val_loss"])
    assert [m["best_single"] for m in models] == [i == best for i in range(3)]
    per_person = min(range(2), key=lambda i: models[i]["likelihood"]["val_per_person"]["nats_per_symbol"])
    assert [m["best_single_per_person"] for m in models] == [i == per_person for i in range(3)]
    marks = ["(best single)"] if best == per_person else ["(best single per name)", "(best single per person)"]
    assert "## Side by side: members and ensemble" in page and all(mark in page for mark in marks)
    ens = models[2]["likelihood"]
    against = (f"{ens['val']['nats_per_symbol'] - models[best]['likelihood']['val']['nats_per_symbol']:+.4f} nats/symbol "
               f"per name, {ens['val_per_person']['nats_per_symbol'] - models[per_person]['likelihood']['val_per_person']['nats_per_symbol']:+.4f} per person")
    assert against in page  # each figure against the best member by that figure
    out = capsys.readouterr().out
    assert "side by side" in out and all(m["name"] in out for m in models)


def test_the_comparison_uses_the_reports_definitions_and_the_exact_n_best(trained, tmp_path):
    inputs = load_inputs(trained["ensemble"])
    cands, teacher = compare.checkpoint_candidates(inputs)
    assert teacher is None and [c.role for c in cands] == ["member", "member", "ensemble"]
    result = compare.compare(cands, inputs, nbest_prefixes=["", "Ma", "Jo", "Ana", "Ωm"], repeats=2, step_calls=20)
    val_names, counts = [e.name for e in inputs.val], [e.count for e in inputs.val]
    metrics = trained["metrics"]
    for c, row, recorded in zip(cands, result["models"],
                                [m["best_val_loss"] for m in metrics["members"]] + [metrics["best_val_loss"]]):
        # per name: what training measured on the same split (other batches: the parity rule)
        assert_close(row["likelihood"]["val"]["nats_per_symbol"], recorded, c.name)
        nats = model_nats_per_name(c.model, inputs.vocab, val_names)
        assert row["likelihood"]["val_per_person"] == person_nll(nats, val_names, counts)
        assert row["likelihood"]["val_per_person"]["nats_per_symbol"] != pytest.approx(
            row["likelihood"]["val"]["nats_per_symbol"])  # the counts weigh in
        assert row["parameters"] == sum(p.numel() for p in c.model.parameters())
        assert row["ms_per_name"]["n"] == 2 and row["ms_per_name"]["median"] > 0 and row["us_per_step"]["median"] > 0
        # the timed names are the greedy names of the model's own step (names are exact)
        prefixes = result["timing"]["prefixes"]
        assert prefixes == ["", *sorted({n[0] for n in NAMES})]
        gen = TorchGenerator(c.model.step, inputs.vocab, (c.model.num_layers, c.model.hidden_size))
        from core.request import make_rows

        assert list(row["greedy"].values()) == gen.generate_rows(
            [make_rows(inputs.vocab, p, num=1)[0] for p in prefixes])
        assert row["greedy_length"] == pytest.approx(sum(map(len, row["greedy"].values())) / len(prefixes))
    assert result["models"][2]["parameters"] == result["models"][0]["parameters"] + result["models"][1]["parameters"]
    # n-best lists: the best single model's and the ensemble's, the exact search's, a prefix the
    # vocabulary cannot write left out and said
    assert result["nbest"]["prefixes"] == ["", "Ma", "Jo", "Ana"] and result["nbest"]["dropped"] == ["Ωm"]
    train_set = {e.name for e in inputs.train}
    for c, row in zip(cands, result["models"]):
        if c.role == "member" and not row["best_single"]:
            assert row["nbest"] is None
            continue
        for prefix in result["nbest"]["prefixes"]:
            found = TorchGenerator(c.model.step, inputs.vocab, (c.model.num_layers, c.model.hidden_size)).nbest(
                prefix, num=compare.NBEST_NUM)
            names = [inputs.vocab.decode(ids) for ids in found.ids]
            assert [n for n, _, _ in row["nbest"][prefix]["names"]] == names
            assert [lp for _, lp, _ in row["nbest"][prefix]["names"]] == found.logprobs
            assert [k == "training" for _, _, k in row["nbest"][prefix]["names"]] == [n in train_set for n in names]
    md = compare.markdown(result)
    assert "Ωm" in md and "#### Starting with “Ana”" in md
    ens = result["models"][2]
    assert (f"| {ens['name']} | {ens['parameters']:,} | {ens['likelihood']['val']['nats_per_symbol']:.4f} | "
            f"{ens['likelihood']['val_per_person']['nats_per_symbol']:.4f} |") in md


def test_the_cost_is_timed_on_the_scripted_step_one_request_at_a_time_on_one_thread(trained, monkeypatch):
    model, vocab, _ = load_checkpoint(trained["ensemble"])
    seen = []

    def recording(step, rows, **kw):
        seen.append((isinstance(step, torch.jit.ScriptModule), len(rows), torch.get_num_threads()))
        return decode(step, rows, **kw)

    monkeypatch.setattr("evaluation.compare.decode", recording)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = compare.time_greedy([model, model.members[0]], vocab, ["", "Ma", "Jo"], repeats=3, step_calls=5)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    # an unrecorded round, then 3 timed rounds, per model, of 3 names each
    assert seen == [(True, 1, 1)] * (2 * 4 * 3)
    assert [o["ms_per_name"]["n"] for o in out] == [3, 3]


def test_a_student_is_compared_with_its_teacher_and_the_teachers_best_member(trained, tmp_path):
    rep, md, page, card = run_eval(trained["student"], tmp_path)
    teacher = str(trained["ensemble"])
    assert rep["model"]["teacher"] == teacher and rep["model"]["label"] == "RNN 1×24"
    assert page.splitlines()[1].startswith(f"# Model quality: RNN 1×24 distilled from `{teacher}` on ")
    assert f"distilled from `{teacher}`" in md
    model_type = next(line for line in card.splitlines() if line.startswith("- **Model type:**"))
    assert f"Distilled from the teacher checkpoint `{teacher}`" in model_type and "distillation" in card
    comparison = rep["comparison"]
    assert [m["role"] for m in comparison["models"]] == ["teacher member", "teacher member", "teacher", "student"]
    best = min(range(2), key=lambda i: trained["metrics"]["members"][i]["best_val_loss"])
    assert [m["name"] for m in comparison["models"][:2]] == [
        f"teacher's member {i} (seed {i}, counts {WEIGHTINGS[i]})" for i in range(2)]
    assert comparison["models"][best]["best_single"] and comparison["teacher"]["status"] == "compared"
    assert comparison["teacher"]["fingerprint"] == load_checkpoint(trained["ensemble"])[2]["fingerprint"]
    assert "## Side by side: teacher and student" in page and comparison["teacher"]["fingerprint"] in page
    assert_close(comparison["models"][3]["likelihood"]["val"]["nats_per_symbol"],
                 rep["likelihood"]["model"]["val"]["nats_per_symbol"], "the student's own figure")


def test_a_student_whose_teacher_is_gone_or_foreign_is_shown_alone_and_says_why(trained, tmp_path, capsys):
    model, vocab, ckpt = load_checkpoint(trained["student"])
    gone = tmp_path / "gone" / "checkpoint.pt"
    save_checkpoint(gone, model, vocab, metrics=ckpt["metrics"], history=ckpt["history"],
                    train_args={**ckpt["train_args"], "teacher": "artifacts/no-such-ensemble/checkpoint.pt"})
    rep, _, page, _ = run_eval(gone, tmp_path / "a")
    assert [m["role"] for m in rep["comparison"]["models"]] == ["student"]
    assert rep["comparison"]["teacher"]["status"] == "missing"
    assert "teacher `artifacts/no-such-ensemble/checkpoint.pt` is not compared: missing" in page
    assert "teacher not compared: missing" in capsys.readouterr().out
    # a teacher of another split could have trained on the student's validation names
    tm, tv, tckpt = load_checkpoint(trained["ensemble"])
    other = tmp_path / "other-split.pt"
    save_checkpoint(other, tm, tv, metrics={**tckpt["metrics"], "val_names": 9}, train_args=tckpt["train_args"])
    foreign = tmp_path / "foreign" / "checkpoint.pt"
    save_checkpoint(foreign, model, vocab, metrics=ckpt["metrics"], train_args={**ckpt["train_args"],
                                                                               "teacher": str(other)})
    cands, teacher = compare.checkpoint_candidates(load_inputs(foreign))
    assert [c.role for c in cands] == ["student"] and teacher["status"] == "other split"
    assert "validation names" in teacher["detail"]
    # the teacher's path now holds another training run than the one the student learned from
    retrained = tmp_path / "retrained.pt"
    save_checkpoint(retrained, tm.members[0], tv, metrics=tckpt["metrics"], train_args=tckpt["train_args"])
    relabelled = tmp_path / "relabelled" / "checkpoint.pt"
    save_checkpoint(relabelled, model, vocab, metrics=ckpt["metrics"], train_args={**ckpt["train_args"],
                                                                                   "teacher": str(retrained)})
    cands, teacher = compare.checkpoint_candidates(load_inputs(relabelled))
    assert [c.role for c in cands] == ["student"] and teacher["status"] == "retrained"
    assert ckpt["metrics"]["teacher_fingerprint"] in teacher["detail"]


def test_a_plain_single_model_has_nothing_to_compare(trained):
    inputs = load_inputs(trained["ensemble"])
    single = trained["root"] / "single.pt"
    member = inputs.model.members[0]
    save_checkpoint(single, member, inputs.vocab, metrics=trained["metrics"]["members"][0],
                    train_args=asdict(tiny_config(corpus=str(trained["corpus"]))))
    assert compare.checkpoint_candidates(load_inputs(single)) == ([], None)
