"""Interrupting training or export at random points never leaves a broken or mixed artifact set."""

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from export.verify import fingerprints
from model.checkpoint import load_checkpoint
from tests.conftest import NAMES, build_artifacts

ROOT = Path(__file__).resolve().parents[1]


def interrupt(cmd: list[str], after: float, sig: int) -> int:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(after)
    proc.send_signal(sig)
    return proc.wait(timeout=60)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_leaves_a_loadable_checkpoint(tiny_artifacts, tmp_path, sig):
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    checkpoint = tmp_path / "checkpoint.pt"
    shutil.copyfile(tiny_artifacts.checkpoint, checkpoint)
    rng = random.Random(sig)
    for _ in range(1):
        interrupt([sys.executable, "-m", "model.train", "--corpus", str(corpus), "--out", str(checkpoint),
                   "--hidden", "16", "--epochs", "30", "--patience", "0", "--no-progress", "--threads", "1"],
                  rng.uniform(1.0, 5.0), sig)
        load_checkpoint(checkpoint)  # the old one or a complete new one, never a torn file
        assert leftovers(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_export_leaves_one_consistent_set(tiny_artifacts, tmp_path, sig):
    out = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts.dir, out)
    rng = random.Random(sig)
    for _ in range(1):
        interrupt([sys.executable, "-m", "export", "--checkpoint", str(out / "checkpoint.pt"), "--out-dir", str(out)],
                  rng.uniform(1.0, 8.0), sig)
        found, problems = fingerprints(out)
        assert problems == [] and len(found) == 5
        assert leftovers(out) == []


def test_verify_detects_an_export_from_another_training_run(tiny_artifacts, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_artifacts.dir, mixed)
    other = build_artifacts(tmp_path / "other", epochs=2, seed=5)
    shutil.copyfile(other.onnx, mixed / "charrnn.onnx")
    _, problems = fingerprints(mixed)
    assert len(problems) == 1 and "different training runs" in problems[0]
    cli = subprocess.run([sys.executable, "-m", "export.verify", "--dir", str(mixed)], check=False, cwd=ROOT,
                         capture_output=True, text=True)
    assert cli.returncode == 1 and "different training runs" in cli.stderr
