"""Interrupting training or export at its riskiest moments never leaves a broken or mixed set.

Each command is signalled at a moment it announces itself (core.atomic.pause_point, enabled by
CHARRNN_PAUSE_AT), never after a guessed delay, and must really have been interrupted. The exit
status is the commands' contract: SIGINT raises KeyboardInterrupt and Python then ends the process
by SIGINT (-2); SIGTERM becomes SystemExit(143) (core.atomic.exit_on_sigterm), so the cleanup of
temporary files runs. The new checkpoint comes from another training run than the previous set,
so a file of either run in the wrong place shows as a fingerprint mismatch.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.atomic import PAUSE_ENV, exit_on_sigterm, signals_deferred
from data.corpus import Entry
from model.checkpoint import load_checkpoint, save_checkpoint
from model.train import train
from soak.interrupted_make import heed_sigint
from tests.conftest import NAMES, build_artifacts, tiny_config
from tools.verify import ARTIFACTS, fingerprints

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = [signal.SIGINT, signal.SIGTERM]
INTERRUPTED = {signal.SIGINT: -signal.SIGINT, signal.SIGTERM: 128 + signal.SIGTERM}


def run_until(cmd: list[str], point: str, sig: int, tmp_path: Path, timeout: float = 60.0) -> int:
    """Run `cmd` with the pause point `point` enabled, send `sig` once the process has announced
    that it reached it, and return the exit status."""
    marker = tmp_path / f"paused-at-{point}"
    log = tmp_path / f"{point}.log"
    env = {**os.environ, PAUSE_ENV: f"{point}:{marker}"}
    heed_sigint()  # a test run started in the background would pass SIGINT on ignored
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{cmd[2]} never reached the pause point {point!r} (exit {proc.poll()}):\n"
                            f"{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)
    finally:
        proc.kill()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory) -> tuple[Path, str]:
    """A checkpoint of another training run (another seed and width) than tiny_artifacts'."""
    model, vocab, metrics, history = train([Entry(n) for n in NAMES], tiny_config(hidden_size=16, epochs=2, seed=5),
                                           progress=False)
    path = tmp_path_factory.mktemp("other") / "checkpoint.pt"
    ckpt = save_checkpoint(path, model, vocab, metrics=metrics, history=history)
    return path, ckpt["fingerprint"]


def previous_fingerprint(tiny_artifacts) -> str:
    return load_checkpoint(tiny_artifacts.checkpoint)[2]["fingerprint"]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_training_interrupted_while_saving_keeps_the_previous_checkpoint(tiny_artifacts, tmp_path, sig):
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    checkpoint = tmp_path / "checkpoint.pt"
    shutil.copyfile(tiny_artifacts.checkpoint, checkpoint)
    # paused with the new checkpoint written beside the old one, just before the rename
    code = run_until([sys.executable, "-m", "model.train", "--corpus", str(corpus), "--out", str(checkpoint),
                      "--hidden", "16", "--epochs", "2", "--seed", "5", "--patience", "0", "--no-progress",
                      "--threads", "1"], "checkpoint", sig, tmp_path)
    assert code == INTERRUPTED[sig]
    assert load_checkpoint(checkpoint)[2]["fingerprint"] == previous_fingerprint(tiny_artifacts)
    assert leftovers(tmp_path) == []  # the new checkpoint's temporary file is gone


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_export_interrupted_before_its_commit_keeps_the_previous_set(tiny_artifacts, other_checkpoint, tmp_path, sig):
    out = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts.dir, out)
    new_checkpoint, _ = other_checkpoint
    # paused with every new file built and checked in the staging folder
    code = run_until([sys.executable, "-m", "export", "--checkpoint", str(new_checkpoint), "--out-dir", str(out)],
                     "export-staged", sig, tmp_path)
    assert code == INTERRUPTED[sig]
    found, problems = fingerprints(out)
    assert problems == []
    assert found == dict.fromkeys(ARTIFACTS, previous_fingerprint(tiny_artifacts))
    assert leftovers(out) == []  # the staging folder is removed


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_during_the_export_commit_waits_for_the_whole_set(tiny_artifacts, other_checkpoint, tmp_path, sig):
    out = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts.dir, out)
    new_checkpoint, new = other_checkpoint
    shutil.copyfile(new_checkpoint, out / "checkpoint.pt")  # as `make` does: the new checkpoint, then its export
    # paused inside the commit: vocab.json is already the new run's, the other exports not yet
    code = run_until([sys.executable, "-m", "export", "--checkpoint", str(out / "checkpoint.pt"),
                      "--out-dir", str(out)], "export-commit", sig, tmp_path)
    assert code == INTERRUPTED[sig]  # the signal was held, not lost: it ends the command after the commit
    found, problems = fingerprints(out)
    assert problems == []
    assert found == dict.fromkeys(ARTIFACTS, new)
    assert leftovers(out) == []


def test_a_second_signal_during_the_export_cleanup_does_not_leave_its_staging_folder(tiny_artifacts, tmp_path,
                                                                                    monkeypatch):
    """make forwards SIGTERM to its recipe: a command signalled through make's process group gets
    a second SIGTERM while it cleans up after the first."""
    import export.pipeline as export_main

    out = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts.dir, out)
    real_rmtree = shutil.rmtree

    def failed_check(*args):
        raise RuntimeError("a failed check: the export cleans up")

    def rmtree_meeting_a_signal(path, *args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(export_main, "export_generate", failed_check)
    monkeypatch.setattr(export_main.shutil, "rmtree", rmtree_meeting_a_signal)
    previous = signal.getsignal(signal.SIGTERM)
    exit_on_sigterm()
    try:
        with pytest.raises(SystemExit) as exited:  # delivered once the staging folder is gone
            export_main.export_all(out / "checkpoint.pt", out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exited.value.code == INTERRUPTED[signal.SIGTERM]
    assert leftovers(out) == []


def test_a_second_sigterm_does_not_cut_the_cleanup_after_the_first_short():
    cleaned = []
    previous = signal.getsignal(signal.SIGTERM)
    exit_on_sigterm()
    try:
        with pytest.raises(SystemExit):
            try:
                signal.raise_signal(signal.SIGTERM)
            finally:
                signal.raise_signal(signal.SIGTERM)  # make's forwarded copy, during the cleanup
                cleaned.append("cleanup finished")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert cleaned == ["cleanup finished"]


def test_signals_deferred_holds_signals_until_the_block_ends_then_delivers_them():
    seen = []
    sigint_handler = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append("SIGTERM handled"))
    try:
        with pytest.raises(KeyboardInterrupt), signals_deferred():
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)
            seen.append("block finished")
        assert signal.getsignal(signal.SIGINT) is sigint_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == ["block finished", "SIGTERM handled"]  # held, then delivered in arrival order


def test_verify_detects_an_export_from_another_training_run(tiny_artifacts, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_artifacts.dir, mixed)
    other = build_artifacts(tmp_path / "other", epochs=2, seed=5)
    shutil.copyfile(other.onnx, mixed / "charrnn.onnx")
    _, problems = fingerprints(mixed)
    assert len(problems) == 1 and "different training runs" in problems[0] and "charrnn.onnx" in problems[0]
    for module in ("tools.verify", "export.verify"):  # make verify's command, and its old name
        cli = subprocess.run([sys.executable, "-m", module, "--dir", str(mixed)], check=False, cwd=ROOT,
                             capture_output=True, text=True)
        assert cli.returncode == 1 and cli.stderr.strip() == f"error: {problems[0]}", (module, cli.stderr)
