"""`make soak`'s make section signals only while the phase it aims at runs, retries earlier when a
moment comes too late, and reports "not exercised" apart from "failed" (soak/interrupted_make.py).
The real `make` runs are `make soak`'s; here the decisions around them are checked."""

import signal
import subprocess
import sys

import pytest

from soak import interrupted_make as im
from soak.report import Table

TRAINING, CHECKPOINT_PAUSE, EXPORT, COMMIT_PAUSE = im.STEPS


def child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def moment(seen, delay: float = 0.0) -> im.Moment:
    return im.Moment("test moment", lambda art, log, marker: seen(art), delay)


def test_no_signal_once_the_watched_file_was_replaced(tmp_path):
    watched, go, done = tmp_path / "checkpoint.pt", tmp_path / "go", tmp_path / "done"
    watched.write_text("previous")
    (tmp_path / "log").write_text("")
    # the child replaces the watched file only once the harness watches it, then keeps running
    proc = child(f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
                 f"open({str(tmp_path / 'new')!r}, 'w').close(); os.replace({str(tmp_path / 'new')!r}, {str(watched)!r})\n"
                 f"open({str(done)!r}, 'w').close(); time.sleep(60)")

    def seen(art):
        go.touch()
        return done.exists()

    try:
        missed = im._signal_at(proc, signal.SIGINT, moment(seen), tmp_path, tmp_path / "log", 0, "checkpoint.pt", None)
        assert missed == "checkpoint.pt was already replaced"
        assert proc.poll() is None  # not signalled
    finally:
        proc.kill()
        proc.wait()


def test_a_signal_at_the_moment_while_the_phase_runs(tmp_path):
    (tmp_path / "checkpoint.pt").write_text("previous")
    (tmp_path / "log").write_text("")
    proc = child(f"import time; open({str(tmp_path / 'started')!r}, 'w').close(); time.sleep(60)")
    try:
        missed = im._signal_at(proc, signal.SIGTERM, moment(lambda art: (art / "started").exists()), tmp_path,
                               tmp_path / "log", 0, "checkpoint.pt", None)
        assert missed is None
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        proc.kill()


def test_no_signal_when_the_command_ends_before_the_moment(tmp_path):
    (tmp_path / "log").write_text("")
    proc = child("pass")
    missed = im._signal_at(proc, signal.SIGINT, moment(lambda art: False), tmp_path, tmp_path / "log", 0, None, None)
    assert missed == "make had finished before the moment came"


def test_the_training_step_watches_for_printed_progress_after_the_command_line():
    seen = im._printed_after(im.TRAINING)
    line = ".venv/bin/python -m model.train --corpus c --out x\n"
    assert not seen(None, "make: something\n", None)
    assert not seen(None, line, None)  # echoed by make, the command has printed nothing yet
    assert seen(None, line + "epochs:   0%|", None)


def state(checkpoint: str, exports: dict | str, archives: str = "A", problems=(), leftovers=()) -> dict:
    exports = exports if isinstance(exports, dict) else dict.fromkeys(im.EXPORTS, exports)
    return {"fingerprints": {"checkpoint.pt": checkpoint, **exports, **dict.fromkeys(im.ARCHIVES, archives)},
            "problems": list(problems), "leftovers": list(leftovers)}


@pytest.mark.parametrize(("step", "code", "after", "ok"), [
    (TRAINING, -2, state("A", "A"), True),
    (TRAINING, 0, state("A", "A"), False),  # make was not interrupted
    (TRAINING, -2, state("B", "A"), False),  # the new checkpoint replaced the old one after the signal
    (TRAINING, -2, state("A", "A", leftovers=[".checkpoint.pt.x.tmp"]), False),
    (TRAINING, -2, state("A", "A", problems=["checkpoint.pt: truncated"]), False),
    (EXPORT, -15, state("B", "A"), True),  # interrupted before the commit
    (EXPORT, -15, state("B", "B"), True),  # the signal met the commit, which completed first
    (EXPORT, -15, state("B", {**dict.fromkeys(im.EXPORTS, "A"), "vocab.json": "B"}), False),  # a mix
    (EXPORT, -15, state("B", "A", archives="B"), False),
    (COMMIT_PAUSE, -15, state("B", "A"), False),  # paused inside the commit: only the whole new set is right
    (COMMIT_PAUSE, -15, state("B", "B"), True),
])
def test_judge(step, code, after, ok):
    assert im.judge(step, code, state("A", "A"), after)[0] is ok


def run_section(monkeypatch, tmp_path, missed_for) -> tuple[Table, list]:
    """section_make with make and the artifact checks replaced: `missed_for(step, moment)` says
    whether that attempt came too late (a reason) or was sent (None); every state is the previous one."""
    attempts = []

    def run_make(art, knobs, logfile, sig=None, moment=None, watched=None, marker=None):
        if moment is None:
            return 0, None
        step = next(s for s in im.STEPS if moment in s.moments)
        attempts.append((step.label, moment.label))
        missed = missed_for(step, moment)
        return (0 if missed else -sig), missed

    monkeypatch.setattr(im, "run_make", run_make)
    monkeypatch.setattr(im, "artifact_state", lambda art: {**state("A", "A"), "exports_consistent": True,
                                                           "export_fingerprint": "A"})
    (tmp_path / "make.log").write_text("")
    table = Table()
    im.section_make(table, tmp_path, seed=0)
    return table, attempts


def test_moments_that_all_come_too_late_are_reported_not_exercised_not_failed(monkeypatch, tmp_path):
    table, attempts = run_section(monkeypatch, tmp_path, lambda step, moment: "make had finished")
    assert attempts == [(s.label, m.label) for s in im.STEPS for m in s.moments]  # every moment, latest first
    rows = {r["figure"]: r for r in table.rows}
    for step in im.STEPS:
        assert rows[f"{step.label}: NOT EXERCISED"]["ok"] is None
    assert rows["interruptions exercised"]["value"] == f"0 of {len(im.STEPS)}"


def test_a_moment_too_late_is_retried_earlier_and_then_judged(monkeypatch, tmp_path):
    late = TRAINING.moments[0]
    table, attempts = run_section(monkeypatch, tmp_path,
                                  lambda step, moment: "checkpoint.pt was already replaced" if moment == late else None)
    assert attempts[:2] == [(TRAINING.label, late.label), (TRAINING.label, TRAINING.moments[1].label)]
    row = next(r for r in table.rows if r["figure"].startswith(TRAINING.label))
    assert row["ok"] is True and "came too late" in row["figure"]
    assert next(r for r in table.rows if r["figure"] == "interruptions exercised")["value"] == f"4 of {len(im.STEPS)}"
