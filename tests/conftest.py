"""Shared fixtures: tiny models trained in seconds, so no test depends on a previous `make` run;
and the one Java gate of the real-TorchServe tests."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from data.corpus import Entry
from model.checkpoint import save_checkpoint
from model.train import TrainConfig, train

NAMES = ["Ana", "Antônio", "Beatriz", "Bruno", "Carla", "Cauã", "Davi", "Débora", "Eduardo", "Elisa",
         "Fábio", "Fernanda", "Gabriel", "Giovana", "Heitor", "Helena", "Igor", "Isabela", "João",
         "Júlia", "Kaique", "Larissa", "Lucas", "Maitê", "Marcos", "Maria Clara", "Nicolas", "Olívia",
         "Paulo", "Rafaela", "Samuel", "Sofia", "Thiago", "Valentina", "Vitor", "Yasmin", "Zoe"]


@dataclass
class Artifacts:
    """A trained tiny model and its exports in a temporary folder."""

    dir: Path
    checkpoint: Path
    vocab_json: Path
    torchscript: Path
    onnx: Path


def tiny_config(**overrides) -> TrainConfig:
    # every knob the tiny model depends on, so that changing make's defaults leaves it as it is
    base = {"hidden_size": 24, "num_layers": 1, "cell": "rnn", "epochs": 25, "batch_size": 8, "lr": 0.01,
            "lr_decay": 1.0, "lr_schedule": "exp", "patience": 0, "val_fraction": 0.15, "count_weighting": "none",
            "length_pool": 32, "seed": 0, "max_seconds": 0.0, "threads": 1}
    base.update(overrides)
    return TrainConfig(**base)


def build_artifacts(out_dir: Path, **overrides) -> Artifacts:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model, vocab, metrics, history = train([Entry(n) for n in NAMES], tiny_config(**overrides), progress=False)
    return exported(out_dir, model, vocab, metrics=metrics, history=history)


def exported(out_dir: Path, model, vocab, **record) -> Artifacts:
    """`model` saved as out_dir/checkpoint.pt (with `record`: metrics, history) and exported beside it."""
    from export.pipeline import export_all

    checkpoint = out_dir / "checkpoint.pt"
    save_checkpoint(checkpoint, model, vocab, **record)
    export_all(checkpoint, out_dir)
    return Artifacts(out_dir, checkpoint, out_dir / "vocab.json", out_dir / "charrnn.torchscript.pt",
                     out_dir / "charrnn.onnx")


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory) -> Artifacts:
    """1-layer tanh RNN trained on NAMES, exported; shared by the whole session (read-only)."""
    return build_artifacts(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """NAMES as a corpus file: the one the tiny model was trained on (read-only)."""
    path = tmp_path_factory.mktemp("tiny-corpus") / "names.txt"
    path.write_text("".join(f"{n}\n" for n in NAMES), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_card(tiny_artifacts, tiny_corpus, tmp_path_factory) -> Path:
    """The tiny model's model card (evaluation.card on its corpus), in a folder of its own (read-only)."""
    from core import contract
    from evaluation.card import build_card, write_card
    from evaluation.report import load_inputs

    card = tmp_path_factory.mktemp("tiny-card") / contract.MODEL_CARD
    write_card(card, build_card(load_inputs(tiny_artifacts.checkpoint, tiny_corpus, val_fraction=0.15)))
    return card


def unpacked_model_dir(artifacts: Artifacts, d: Path) -> Path:
    """What TorchServe unpacks charrnn.mar into, of `artifacts`, in the new folder `d`."""
    d.mkdir(parents=True, exist_ok=True)
    for src, name in ((artifacts.torchscript, "charrnn.torchscript.pt"), (artifacts.vocab_json, "vocab.json"),
                      (artifacts.dir / "charrnn_generate.onnx", "charrnn_generate.onnx")):
        shutil.copy2(src, d / name)
    return d


@pytest.fixture(scope="session")
def model_dir(tiny_artifacts, tmp_path_factory) -> Path:
    """What TorchServe unpacks charrnn.mar into: the TorchScript step beside vocab.json and the
    one-graph greedy decoder (read-only: a test that alters it works on a copy)."""
    return unpacked_model_dir(tiny_artifacts, tmp_path_factory.mktemp("model_dir"))


@pytest.fixture(scope="session")
def tiny_names() -> list[str]:
    return list(NAMES)


# each variant's training overrides; "ens" is tiny_ensemble (its members: ENSEMBLE_MEMBERS)
VARIANTS = {"rnn-1": {}, "rnn-2": {"num_layers": 2}, "gru-1": {"cell": "gru"}, "ens": {}}
# built only for a test that asks for it: @pytest.mark.parametrize("variant_artifacts", [...], indirect=True)
MORE_VARIANTS = {"gru-2": {"cell": "gru", "num_layers": 2}}


@pytest.fixture(scope="session", params=list(VARIANTS))
def variant_artifacts(request, tmp_path_factory, tiny_artifacts) -> Artifacts:
    """The tiny model as a 1-layer tanh RNN, a 2-layer RNN, a GRU and an ensemble of a GRU and an
    RNN (tiny_ensemble); each built once per session."""
    if request.param == "rnn-1":
        return tiny_artifacts
    if request.param == "ens":
        return request.getfixturevalue("tiny_ensemble")
    config = {**VARIANTS, **MORE_VARIANTS}[request.param]
    return build_artifacts(tmp_path_factory.mktemp(request.param), epochs=5, **config)


# an ensemble's members (model.ensemble): both cells and two hidden sizes, so that nothing downstream
# can assume one cell, one size or one member's parameter names; as the variants, a few epochs each
ENSEMBLE_MEMBERS = ({"cell": "gru", "hidden_size": 16, "seed": 1}, {"cell": "rnn", "hidden_size": 24, "seed": 2})


def build_ensemble_artifacts(out_dir: Path, members=ENSEMBLE_MEMBERS, epochs: int = 5) -> Artifacts:
    """An ensemble of tiny models trained on NAMES (model.ensemble.CharRNNEnsemble), exported as
    any checkpoint is (export.pipeline.export_all)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    from model.ensemble import CharRNNEnsemble

    models, vocab = [], None
    for overrides in members:
        torch.manual_seed(overrides.get("seed", 0))
        model, vocab, _, _ = train([Entry(n) for n in NAMES], tiny_config(**{"epochs": epochs, **overrides}), progress=False)
        models.append(model)
    return exported(out_dir, CharRNNEnsemble.of(models).eval(), vocab)


@pytest.fixture(scope="session")
def tiny_ensemble(tmp_path_factory) -> Artifacts:
    """An ensemble of a tiny GRU (16 units) and a tiny tanh RNN (24 units), exported (read-only)."""
    return build_ensemble_artifacts(tmp_path_factory.mktemp("ensemble"))


@pytest.fixture(scope="session")
def ensemble_card(tiny_ensemble, tiny_corpus, tmp_path_factory) -> Path:
    """The tiny ensemble's model card, as tiny_card (read-only)."""
    from core import contract
    from evaluation.card import build_card, write_card
    from evaluation.report import load_inputs

    card = tmp_path_factory.mktemp("ensemble-card") / contract.MODEL_CARD
    write_card(card, build_card(load_inputs(tiny_ensemble.checkpoint, tiny_corpus, val_fraction=0.15)))
    return card


@pytest.fixture(scope="session")
def ensemble_model_dir(tiny_ensemble, tmp_path_factory) -> Path:
    """model_dir of the tiny ensemble (read-only)."""
    return unpacked_model_dir(tiny_ensemble, tmp_path_factory.mktemp("ensemble_model_dir"))


@pytest.fixture(scope="session", params=["single", "ensemble"])
def tiny_or_ensemble(request) -> Artifacts:
    """The tiny model, then the tiny ensemble: for the tests every backend must pass with both
    (an ensemble is served as one step, with no special case anywhere)."""
    return request.getfixturevalue("tiny_artifacts" if request.param == "single" else "tiny_ensemble")


def assert_close(got, want, what: str = "", rounding: float = 0.0) -> None:
    """`got` is `want` by the project's parity rule (export.parity): for float results of
    different kernels (batch sizes, buckets, backends). Names and ids are compared exactly."""
    from export import parity

    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, want {want.shape}"
    share = parity.shares(want, got, rounding)
    if not share.size:
        return
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(share)), share.shape))
    assert share[worst] <= 1.0, (
        f"{what}: at {worst} got {float(got[worst]):.9g}, want {float(want[worst]):.9g}: {share[worst]:.3g}x "
        f"the tolerance {float(parity.tolerance(want, rounding)[worst]):.3g}")


def in_ci() -> bool:
    """CI=true (GitHub Actions, GitLab and .ci/run's callers set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_java(what: str) -> str:
    """The Java TorchServe will run (serve.server.find_java), or: locally, skip `what` with the
    reason; in CI, fail, so that a machine without Java 17 cannot pass by skipping them."""
    from serve.server import ServerError, check_java

    try:
        return check_java()
    except ServerError as exc:
        message = f"{what} need Java 17: {exc}"
        if in_ci():
            pytest.fail(f"{message} (CI is set: these tests must run, not skip)", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def loaded(tiny_artifacts):
    """The tiny model and its vocabulary, loaded from its checkpoint."""
    from model.checkpoint import load_checkpoint

    model, vocab, _ = load_checkpoint(tiny_artifacts.checkpoint)
    return model, vocab


def decode_loaded(loaded, rows, **kw):
    """model.decode.decode over the eager step of a `loaded` (model, vocab) pair."""
    from model.decode import decode

    model, vocab = loaded
    return decode(model.step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                  hidden_shape=(model.num_layers, model.hidden_size), **kw)


def reference_loaded(loaded, rows, **kw):
    """tests.reference_decode (the plain loop the real one must equal) over a `loaded` pair."""
    from tests.reference_decode import reference_decode

    model, vocab = loaded
    return reference_decode(model.step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                            hidden_shape=(model.num_layers, model.hidden_size), **kw)
