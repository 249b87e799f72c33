"""Corrupted artifacts: every loader refuses them with one clear error naming the file, the
handler refuses to start on them, and a mismatched pair from another training run is detected.

Kinds of damage (soak/corrupt.py): truncated, single bits flipped at seeded random offsets, and
a swapped vocabulary in an otherwise well-formed file (valid zip CRCs, JSON, protobuf). For the
checkpoint, TorchScript, both ONNX files, vocab.json and the .mar. A flip may land where it
changes nothing (zip padding): then the file must load and behave exactly as the original.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from core.errors import ArtifactError
from serve.archive import build_archives, check_archive
from serve.handler import CharRNNHandler
from serve.standin import StandInContext
from soak import corrupt
from tools.verify import fingerprints

FLIPS = 12  # seeded single-bit flips per artifact


@pytest.fixture(scope="module")
def mar(tiny_artifacts, tmp_path_factory) -> Path:
    return build_archives(tiny_artifacts.torchscript, tiny_artifacts.vocab_json,
                          tmp_path_factory.mktemp("store"), models=("charrnn",),
                          greedy_graph=tiny_artifacts.dir / "charrnn_generate.onnx")[0]


@pytest.fixture(scope="module")
def originals(tiny_artifacts, mar) -> dict:
    return {name: corrupt.probe(mar if name.endswith(".mar") else tiny_artifacts.dir / name, tiny_artifacts.dir)
            for name in corrupt.ARTIFACTS}


@pytest.mark.parametrize("kind", corrupt.KINDS)
@pytest.mark.parametrize("name", corrupt.ARTIFACTS)
def test_every_loader_refuses_a_damaged_artifact_naming_it(tiny_artifacts, mar, originals, tmp_path, name, kind):
    src = mar if name.endswith(".mar") else tiny_artifacts.dir / name
    rng = random.Random(f"{name}/{kind}")
    outcomes = []
    for attempt in range(FLIPS if kind == "flip" else 1):
        case = tmp_path / str(attempt)
        case.mkdir()
        dst = case / name
        corrupt.damage(src, dst, kind, rng)
        outcome, message = corrupt.verdict(dst, originals[name], tiny_artifacts.dir)
        assert outcome in corrupt.OK, f"{name} {kind}: {outcome}: {message}"
        if outcome == "rejected":
            assert "\n" not in message and str(dst) in message, message  # one line, the file named
        outcomes.append(outcome)
    if kind != "flip":  # truncation and a swapped vocabulary always change what would be served
        assert outcomes == ["rejected"]
    else:
        assert outcomes.count("rejected") >= FLIPS // 2, Counter(outcomes)


def model_dir_from(tiny_artifacts, tmp_path: Path) -> Path:
    """What TorchServe unpacks a .mar into (TorchScript and vocab.json beside the handler)."""
    d = tmp_path / "model"
    d.mkdir()
    shutil.copy2(tiny_artifacts.torchscript, d / "charrnn.torchscript.pt")
    shutil.copy2(tiny_artifacts.vocab_json, d / "vocab.json")
    return d


def start_handler(model_dir: Path, mode: str = "generate") -> CharRNNHandler:
    handler = CharRNNHandler()
    handler.initialize(StandInContext(model_dir, model_yaml_config={"handler": {"mode": mode}}))
    return handler


@pytest.mark.parametrize("kind", corrupt.KINDS)
@pytest.mark.parametrize("name", ["charrnn.torchscript.pt", "vocab.json"])
def test_the_handler_refuses_to_start_on_a_damaged_file(tiny_artifacts, tmp_path, name, kind):
    model_dir = model_dir_from(tiny_artifacts, tmp_path)
    src = tmp_path / name
    shutil.copy2(model_dir / name, src)
    rng = random.Random(7)
    while True:  # a flip that changes the file's meaning (not one in zip padding)
        corrupt.damage(src, model_dir / name, kind, rng)
        if kind != "flip" or corrupt.verdict(model_dir / name, corrupt.probe(src, tiny_artifacts.dir),
                                             tiny_artifacts.dir)[0] == "rejected":
            break
    for mode in ("generate", "session"):
        with pytest.raises(ArtifactError, match=str(model_dir / name).replace(".", "[.]")):
            start_handler(model_dir, mode)


def test_the_handler_refuses_an_archive_whose_checksums_do_not_match(tiny_artifacts, mar, tmp_path):
    import zipfile

    model_dir = tmp_path / "unpacked"
    with zipfile.ZipFile(mar) as z:
        z.extractall(model_dir)
    start_handler(model_dir)  # intact: starts
    engine = model_dir / "serve" / "engine.py"
    engine.write_text(engine.read_text() + "\n# edited\n")  # any shipped file, not only the model
    with pytest.raises(ArtifactError, match="serve/engine.py: checksum mismatch"):
        start_handler(model_dir)
    (model_dir / "checksums.json").write_text("{}")
    with pytest.raises(ArtifactError, match="checksums.json is damaged"):
        start_handler(model_dir)


def test_a_mar_is_checked_like_a_worker_would_start_it(tiny_artifacts, mar, tmp_path, capsys):
    fingerprint = json.loads(tiny_artifacts.vocab_json.read_text())["fingerprint"]
    assert check_archive(mar) == fingerprint
    # swapped vocabulary with its checksum recomputed: the vocabulary check itself must catch it
    bad = tmp_path / "charrnn.mar"
    corrupt.vocab_swapped(mar, bad, fix_mar_checksums=True)
    with pytest.raises(ArtifactError, match=r"charrnn\.mar!/vocab\.json lists other symbols"):
        check_archive(bad)
    from serve.archive import main

    with pytest.raises(SystemExit) as exit_info:  # python -m serve.archive --check ...
        main(["--check", str(mar), str(bad)])
    out = capsys.readouterr()
    assert exit_info.value.code == 1 and f"ok: {mar}" in out.out and "lists other symbols" in out.err


@pytest.mark.parametrize("variant_artifacts", ["gru-1"], indirect=True)
def test_a_pair_from_another_training_run_is_detected(tiny_artifacts, variant_artifacts, mar, tmp_path):
    other = variant_artifacts  # another training run: other weights, other fingerprint
    # every export replaced by the other run's, one at a time: tools.verify (make verify) names it
    for name in ("vocab.json", "charrnn.torchscript.pt", "charrnn.onnx", "charrnn_generate.onnx", "checkpoint.pt"):
        mixed = tmp_path / f"mixed-{name}"
        shutil.copytree(tiny_artifacts.dir, mixed)
        shutil.copy2(other.dir / name, mixed / name)
        _, problems = fingerprints(mixed)
        assert len(problems) == 1 and "different training runs" in problems[0] and name in problems[0], problems
    # the archive with the other run's TorchScript (checksums recomputed): the worker refuses
    bad = tmp_path / "charrnn.mar"
    corrupt.mar_with_member(mar, bad, "charrnn.torchscript.pt", other.torchscript.read_bytes(), fix_checksums=True)
    with pytest.raises(ArtifactError, match="different training runs"):
        check_archive(bad)
    # ... and so does the handler on the pair in a model dir
    model_dir = model_dir_from(tiny_artifacts, tmp_path)
    shutil.copy2(other.torchscript, model_dir / "charrnn.torchscript.pt")
    with pytest.raises(ArtifactError, match="different training runs"):
        start_handler(model_dir)


def test_verify_reports_each_damaged_file_on_its_own_line(tiny_artifacts, tmp_path):
    d = tmp_path / "set"
    shutil.copytree(tiny_artifacts.dir, d)
    corrupt.damage(tiny_artifacts.dir / "charrnn_generate.onnx", d / "charrnn_generate.onnx", "truncate")
    corrupt.damage(tiny_artifacts.dir / "charrnn.onnx", d / "charrnn.onnx", "vocab")
    found, problems = fingerprints(d)
    assert set(found) == {"checkpoint.pt", "vocab.json", "charrnn.torchscript.pt"}
    assert len(problems) == 2 and all("\n" not in p for p in problems)
    assert str(d / "charrnn_generate.onnx") in problems[1] or str(d / "charrnn_generate.onnx") in problems[0]
    # an edited field of vocab.json other than the vocabulary is caught too
    data = json.loads((tiny_artifacts.dir / "vocab.json").read_text())
    data["hidden_size"] += 1
    shutil.copy2(tiny_artifacts.dir / "charrnn.onnx", d / "charrnn.onnx")
    shutil.copy2(tiny_artifacts.dir / "charrnn_generate.onnx", d / "charrnn_generate.onnx")
    (d / "vocab.json").write_text(json.dumps(data))
    _, problems = fingerprints(d)
    assert problems and "hidden_size" in problems[0] and "vocab.json" in problems[0]
