"""Ensembles trained side by side (model.members) and students distilled from them (model.distill):
what `make PRESET=ibge-ensemble` and `make PRESET=ibge` (the student) run, on tiny models."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from dataclasses import replace

import pytest
import torch

from data.corpus import Entry, split
from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import TrainConfig
from model.distill import TeacherError, teacher_targets
from model.ensemble import CharRNNEnsemble
from model.members import MemberError, member_configs, train_members
from model.train import IGNORE, batch_loss, encode_names, evaluate, train
from model.train import main as train_main
from tests.conftest import NAMES, tiny_config

ENTRIES = [Entry(n, 1 + 7 * (i % 5)) for i, n in enumerate(NAMES)]  # counts, so weightings differ


def tiny(**overrides) -> TrainConfig:
    return tiny_config(**{"cell": "gru", "hidden_size": 12, "epochs": 4, **overrides})


def test_each_member_is_its_own_training_run_with_its_seed_and_weighting():
    cfg = tiny(members=3, member_weightings="sqrt, none", seed=5, threads=2)
    configs = member_configs(cfg)
    assert [(c.seed, c.count_weighting, c.members, c.threads) for c in configs] == [
        (5, "sqrt", 1, 1), (6, "none", 1, 1), (7, "sqrt", 1, 1)]  # one core each, weightings in turn
    assert [c.count_weighting for c in member_configs(tiny(members=2, count_weighting="log"))] == ["log", "log"]


def test_members_zero_means_one_per_usable_core(monkeypatch, tmp_path):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr("model.config.CGROUP_CPU_MAX", tmp_path / "no-cgroup-file")
    assert tiny(members=0).member_count() == 3
    assert len(member_configs(tiny(members=0))) == 3
    # a container's CPU quota (cgroup v2 cpu.max) counts, not the host's cores in its affinity
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr("model.config.CGROUP_CPU_MAX", cpu_max)
    for text, cores in (("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", 3),
                        ("900000 100000\n", 3)):
        cpu_max.write_text(text)
        assert tiny(members=0).member_count() == cores, text


def test_one_usable_core_trains_a_single_model_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("model.config.usable_cores", lambda: 1)
    corpus = tmp_path / "names.txt"
    corpus.write_text("".join(f"{n}\n" for n in NAMES), encoding="utf-8")
    out = tmp_path / "checkpoint.pt"
    train_main(["--corpus", str(corpus), "--hidden", "8", "--epochs", "1", "--max-seconds", "0", "--members", "0",
                "--member-weightings", "sqrt,none", "--out", str(out), "--no-progress"])
    assert not isinstance(load_checkpoint(out)[0], CharRNNEnsemble)
    assert "members = 0 gives 1 member here" in capsys.readouterr().out


def _dying_train(real_train):
    def train(entries, cfg, **kw):
        if cfg.seed == 1:
            os._exit(3)  # as the OOM killer or a SIGKILL would end it: no result, no exception
        if cfg.seed == 2:
            raise RuntimeError("member 2's own trouble")
        return real_train(entries, cfg, **kw)
    return train


@pytest.mark.parametrize("members, message", [(2, r"member 1 \(seed 1\) ended without a result \(exit code 3"),
                                              (3, r"member [12] \(seed [12]\) (ended without|failed)")])
def test_a_member_that_dies_or_fails_ends_the_training_with_an_error_naming_it(monkeypatch, members, message):
    """A pool would replace the dead process and wait for its result forever: the run must end,
    saying which member and how, with the other members stopped."""
    import model.train

    monkeypatch.setattr(model.train, "train", _dying_train(model.train.train))
    started = time.perf_counter()
    with pytest.raises(MemberError, match=message):
        train_members(ENTRIES, tiny(members=members, epochs=10**6, max_seconds=60.0), progress=False,
                      log=lambda *_: None)
    assert time.perf_counter() - started < 30  # not the surviving member's 60 s: it was stopped
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("member-")]


def test_a_bad_teacher_is_a_one_line_error_of_the_command(tmp_path, capsys):
    corpus = tmp_path / "names.txt"
    corpus.write_text("".join(f"{n}\n" for n in NAMES), encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        train_main(["--corpus", str(corpus), "--teacher", str(tmp_path / "none.pt"), "--out", str(tmp_path / "c.pt")])
    assert str(exited.value).startswith("error: teacher: ") and "checkpoint not found" in str(exited.value)


@pytest.mark.parametrize("fields, message", [
    ({"members": -1}, "members must be 0"),
    ({"member_weightings": "sqrt,cube"}, "member_weightings must list values of"),
    ({"members": 2, "teacher": "t.pt"}, "a distilled model (teacher) is a single model"),
])
def test_a_bad_ensemble_setting_is_refused_naming_it(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny(**fields)


def test_members_trained_side_by_side_equal_the_same_runs_one_after_another():
    """The parallel runs are plain model.train.train runs (no time budget here, so each is
    reproducible): the ensemble holds exactly the models its members' configs train alone."""
    cfg = tiny(members=2, member_weightings="sqrt,none")
    ensemble, vocab, metrics, history = train_members(ENTRIES, cfg, progress=False, log=lambda *_: None)
    assert isinstance(ensemble, CharRNNEnsemble) and len(ensemble.members) == 2
    for member, member_cfg, member_metrics in zip(ensemble.members, member_configs(cfg), metrics["members"]):
        alone, _, alone_metrics, _ = train(ENTRIES, member_cfg, progress=False)
        for key, value in alone.state_dict().items():
            assert torch.equal(member.state_dict()[key], value), key
        assert member_metrics["best_val_loss"] == alone_metrics["best_val_loss"]
        assert member_metrics["count_weighting"] == member_cfg.count_weighting
    val = encode_names([e.name for e in split(ENTRIES, cfg.val_fraction)[1]], vocab)
    assert metrics["best_val_loss"] == evaluate(ensemble, val, torch.device("cpu"))
    assert metrics["best_member_val_loss"] == min(m["best_val_loss"] for m in metrics["members"])
    assert sorted({row["member"] for row in history}) == [0, 1]
    assert len(history) == sum(m["epochs_run"] for m in metrics["members"])


def test_model_train_writes_an_ensemble_checkpoint_that_loads_as_one(tmp_path, capsys):
    corpus = tmp_path / "names.txt"
    corpus.write_text("".join(f"{e.name}\t{e.count}\n" for e in ENTRIES), encoding="utf-8")
    out = tmp_path / "ens" / "checkpoint.pt"
    train_main(["--corpus", str(corpus), "--cell", "gru", "--hidden", "8", "--epochs", "2", "--max-seconds", "0",
                "--members", "2", "--member-weightings", "sqrt,none", "--out", str(out), "--no-progress"])
    model, _, ckpt = load_checkpoint(out)
    assert isinstance(model, CharRNNEnsemble) and model.hidden_size == 16 and len(model.members) == 2
    assert ckpt["train_args"]["members"] == 2 and len(ckpt["metrics"]["members"]) == 2
    assert (out.parent / "loss.png").is_file() and "member" in (out.parent / "history.csv").read_text()
    assert "ensemble of 2" in capsys.readouterr().out


# ---- distillation ----

@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    cfg = tiny(members=2, member_weightings="sqrt,none")
    ensemble, vocab, metrics, history = train_members(ENTRIES, cfg, progress=False, log=lambda *_: None)
    path = tmp_path_factory.mktemp("teacher") / "checkpoint.pt"
    save_checkpoint(path, ensemble, vocab, metrics=metrics, history=history, train_args=vars(cfg))
    return path, ensemble, vocab


def test_soft_targets_are_the_teachers_distributions(teacher):
    path, ensemble, vocab = teacher
    train_entries, val_entries = split(ENTRIES, 0.15)
    data = encode_names([e.name for e in train_entries], vocab)
    soft, fingerprint = teacher_targets(str(path), tiny(), vocab, len(train_entries), len(val_entries), data,
                                        batch_size=5)
    assert fingerprint == load_checkpoint(path)[2]["fingerprint"]
    with torch.no_grad():
        want = torch.softmax(ensemble(data.inputs)[0], dim=-1)
    torch.testing.assert_close(soft, want, rtol=1e-5, atol=1e-6)
    real = data.targets != IGNORE
    torch.testing.assert_close(soft[real].sum(-1), torch.ones(int(real.sum())), rtol=1e-5, atol=1e-6)


def test_a_one_hot_teacher_gives_the_ordinary_loss(teacher):
    """The soft loss is a cross-entropy against a distribution: with the names' own characters
    as one-hot distributions it is the usual next-character loss."""
    _, ensemble, vocab = teacher
    data = encode_names(NAMES, vocab)
    one_hot = torch.nn.functional.one_hot(data.targets.clamp(min=0), len(vocab)).float()
    index = torch.arange(len(NAMES))
    member = ensemble.members[0]
    hard, n = batch_loss(member, data, index, torch.device("cpu"))
    soft, m = batch_loss(member, data, index, torch.device("cpu"), one_hot)
    assert n == m
    torch.testing.assert_close(soft, hard, rtol=1e-5, atol=1e-4)


def test_a_student_learns_the_teachers_distribution_better_than_the_names_alone(teacher):
    path, ensemble, vocab = teacher
    cfg = tiny(epochs=30, count_weighting="sqrt")
    student, _, metrics, _ = train(ENTRIES, replace(cfg, teacher=str(path)), progress=False)
    plain, _, _, _ = train(ENTRIES, cfg, progress=False)
    data = encode_names(NAMES, vocab)
    real = data.targets != IGNORE
    with torch.no_grad():
        target = torch.softmax(ensemble(data.inputs)[0], dim=-1)[real]

    @torch.no_grad()
    def kl(model):
        logp = torch.log_softmax(model(data.inputs)[0], dim=-1)[real]
        return float((target * (target.log() - logp)).sum(-1).mean())

    assert kl(student) < 0.5 * kl(plain), (kl(student), kl(plain))
    assert math.isfinite(metrics["best_val_loss"])  # validation still scores the names themselves
    assert metrics["teacher_fingerprint"] == load_checkpoint(path)[2]["fingerprint"]  # which teacher, for good


def test_a_teacher_of_another_split_or_vocabulary_is_refused(teacher, tmp_path):
    path, _, _ = teacher
    with pytest.raises(TeacherError, match="trained on another split"):
        train(ENTRIES, tiny(teacher=str(path), val_fraction=0.3), progress=False)
    with pytest.raises(TeacherError, match="vocabulary differs"):
        train(ENTRIES + [Entry("Xyzqw")], tiny(teacher=str(path)), progress=False)
    with pytest.raises(TeacherError, match="checkpoint not found"):
        train(ENTRIES, tiny(teacher=str(tmp_path / "none.pt")), progress=False)
