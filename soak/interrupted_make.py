"""The `make` section of `make soak`: a real `make` of a tiny model into a temporary ART, then
retrains interrupted as Ctrl-C or a supervisor would (the signal goes to make's process group),
each at a moment the harness observed, and every artifact checked afterwards.

A signal is only sent while the phase it aims at is still running: before each one the harness
checks that the file the phase would replace is still the previous one. A signal that would come
too late (a faster machine) is not sent; the step is tried again, with a new seed so make retrains,
at an earlier moment, and reported as "not exercised" if every moment came too late. Only an
interruption that happened and left a wrong set fails the run.

Two steps use real timing (training started; the export's staging folder exists); two use the
pause points of core.atomic (CHARRNN_PAUSE_AT, inherited through make; docs/reliability.md,
"Interrupted builds"), which stop the command at its riskiest moments: the new checkpoint written
but not yet renamed over the old one, and the export's multi-file commit half done (the signal
must be held until the whole set is in place).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core import contract
from core.atomic import PAUSE_ENV

ROOT = Path(__file__).resolve().parent.parent
KNOBS = ["HIDDEN=32", "MAX_SECONDS=4", "EPOCHS=40", "PATIENCE=0", "THREADS=1"]
EXPORTS = contract.EXPORTS
ARCHIVES = contract.ARCHIVES
POLL_S = 0.01


@dataclass(frozen=True)
class Moment:
    """When to signal: `delay` s after `seen(art, log, marker)` first holds (log: make's output
    of this run so far). With `pause`, that core.atomic pause point is enabled and `seen` is its
    marker file: the command waits there for the signal, so the moment cannot pass."""

    label: str
    seen: Callable[[Path, str, Path], bool]
    delay: float = 0.0
    pause: str | None = None


@dataclass(frozen=True)
class Step:
    label: str
    sig: int
    moments: tuple[Moment, ...]  # latest first: the next one is tried when a signal would come too late
    watched: str | None  # the file whose replacement ends the phase aimed at (None: a pause point)
    checkpoint: tuple[str, ...]  # the checkpoint afterwards: "previous", "new" (this run's), or () unjudged
    exports: tuple[str, ...]  # the four exports afterwards: "previous" set, or "new" (the new checkpoint's)


def _printed_after(needle: str) -> Callable[[Path, str, Path], bool]:
    """The command whose line make echoed (containing `needle`) has printed something itself."""

    def seen(art: Path, log: str, marker: Path) -> bool:
        at = log.find(needle)
        end = log.find("\n", at) if at >= 0 else -1
        return end >= 0 and len(log) > end + 1
    return seen


def _echoed(needle: str) -> Callable[[Path, str, Path], bool]:
    return lambda art, log, marker: needle in log


def _staging(art: Path, log: str, marker: Path) -> bool:
    return any(art.glob(".export-*"))


def _paused(art: Path, log: str, marker: Path) -> bool:
    return marker.exists()


TRAINING = "-m model.train"
EXPORT = "-m export --checkpoint"
STEPS = (
    Step("SIGINT during training", signal.SIGINT, (
        Moment("1 s after training printed its first progress", _printed_after(TRAINING), 1.0),
        Moment("as training printed its first progress", _printed_after(TRAINING)),
        Moment("as make started the training command", _echoed(TRAINING)),
    ), contract.CHECKPOINT, ("previous",), ("previous",)),
    Step("SIGINT with the new checkpoint written, not yet renamed over the old one", signal.SIGINT, (
        Moment("at the pause point 'checkpoint'", _paused, pause="checkpoint"),
    ), None, ("previous",), ("previous",)),
    Step("SIGTERM during export", signal.SIGTERM, (
        Moment("1 s after the export's staging folder appeared", _staging, 1.0),
        Moment("as the export's staging folder appeared", _staging),
        Moment("as make started the export command", _echoed(EXPORT)),
    ), contract.VOCAB, (), ("previous", "new")),  # "new": the signal met the commit, which then completed
    Step("SIGTERM inside the export's commit (its first file moved)", signal.SIGTERM, (
        Moment("at the pause point 'export-commit'", _paused, pause="export-commit"),
    ), None, (), ("new",)),
)


def heed_sigint() -> None:
    """Let the commands this process starts see SIGINT. A shell starts a background command
    (`cmd &` in a script) with SIGINT ignored, an ignored signal stays ignored across exec, and
    Python then installs no KeyboardInterrupt: make and its commands would never see the Ctrl-C
    the harness sends. A handler, unlike SIG_IGN, is reset to the default action by exec."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def run_make(art: Path, knobs: list[str], logfile: Path, sig: int | None = None, moment: Moment | None = None,
             watched: str | None = None, marker: Path | None = None) -> tuple[int, str | None]:
    """`make ART=art knobs`, its output appended to `logfile`. With `sig` and `moment`: send the
    signal to make's process group at that moment, unless `watched` (in art) was replaced by then.
    Returns make's exit status and why the signal was not sent (None when it was)."""
    cmd = ["make", "--no-print-directory", f"ART={art}", *knobs]
    env = dict(os.environ)
    env.pop(PAUSE_ENV, None)
    if moment is not None and moment.pause:
        env[PAUSE_ENV] = f"{moment.pause}:{marker}"
    heed_sigint()
    with open(logfile, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}{'  # ' + env[PAUSE_ENV] if PAUSE_ENV in env else ''}\n".encode())
        out.flush()
        offset = out.tell()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env)
        missed = None
        if sig is not None and moment is not None:
            missed = _signal_at(proc, sig, moment, art, logfile, offset, watched, marker)
        code = proc.wait(timeout=900)
    return code, missed


def _signal_at(proc: subprocess.Popen, sig: int, moment: Moment, art: Path, logfile: Path, offset: int,
               watched: str | None, marker: Path | None) -> str | None:
    before = _identity(art / watched) if watched else None

    def log() -> str:
        with open(logfile, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    while not moment.seen(art, log(), marker):
        if proc.poll() is not None:
            return "make had finished before the moment came"
        time.sleep(POLL_S)
    end = time.monotonic() + moment.delay
    while time.monotonic() < end and proc.poll() is None:
        time.sleep(POLL_S)
    if proc.poll() is not None:
        return "make had finished"
    if watched and _identity(art / watched) != before:
        return f"{watched} was already replaced"
    os.killpg(proc.pid, sig)
    if watched and _identity(art / watched) != before:  # replaced while the signal went out: not judged
        return f"{watched} was replaced as the signal went out"
    return None


def artifact_state(art: Path) -> dict:
    """Each artifact loads (with its checksum)? Their fingerprints; leftovers of interrupted writes."""
    from serve.archive import check_archive
    from tools.verify import manifests

    found, problems = manifests(art)
    problems = [p for p in problems if "different training runs" not in p]  # judged by the caller
    fps = {name: meta["fingerprint"] for name, meta in found.items()}
    for name in ARCHIVES:
        try:
            fps[name] = check_archive(art / contract.MODEL_STORE / name)
        except Exception as exc:  # noqa: BLE001 -- reported, not raised
            problems.append(str(exc))
    leftovers = sorted(str(p.relative_to(art)) for d in (art, art / contract.MODEL_STORE) if d.is_dir()
                       for p in d.iterdir() if p.name.startswith("."))
    leftovers = [p for p in leftovers if p != ".train-args"]
    exports = {fps.get(n) for n in (*EXPORTS, *ARCHIVES)}
    return {"fingerprints": fps, "problems": problems, "leftovers": leftovers,
            "exports_consistent": len(exports) == 1 and None not in exports,
            "export_fingerprint": next(iter(exports)) if len(exports) == 1 else None}


def judge(step: Step, code: int, before: dict, after: dict) -> tuple[bool, str]:
    """Did the interrupted run leave what `step` allows? Returns (ok, what was found)."""
    fps, old = after["fingerprints"], before["fingerprints"]
    new = fps.get(contract.CHECKPOINT)

    def which(fp: str | None, previous: str | None) -> str:
        if fp is None:
            return "missing"
        return "previous" if fp == previous else ("new" if fp == new else f"another ({fp})")

    ckpt = which(new, old.get(contract.CHECKPOINT))
    exports = {which(fps.get(n), old.get(n)) for n in EXPORTS}
    export = exports.pop() if len(exports) == 1 else f"MIXED ({', '.join(sorted(exports))})"
    archives = {which(fps.get(n), old.get(n)) for n in ARCHIVES}
    ok = (code != 0 and not after["problems"] and not after["leftovers"]
          and (not step.checkpoint or ckpt in step.checkpoint) and export in step.exports and archives == {"previous"})
    found = (f"make exit {code}; checkpoint {ckpt}, exports {export}, archives {'/'.join(sorted(archives))}; "
             f"load problems {len(after['problems'])}; leftovers {after['leftovers'] or 'none'}")
    return ok, found


def section_make(table, work: Path, seed: int) -> None:
    art = work / "make-art"
    logfile = work / "make.log"
    started = time.monotonic()
    code, _ = run_make(art, KNOBS, logfile)
    base = artifact_state(art)
    ok = code == 0 and base["exports_consistent"] and not base["problems"]
    table.add("make", "a full `make` into a temporary ART (tiny model)", f"exit {code} in "
              f"{time.monotonic() - started:.0f} s, fingerprint {base['export_fingerprint']}", "completes", ok)
    if not ok:
        table.details["make"] = {"log": logfile.read_text()[-3000:], "state": base}
        return
    old = base["export_fingerprint"]
    seeds = itertools.count(seed + 1)  # every attempt changes a knob, so make retrains
    knobs = KNOBS
    exercised = 0
    for step in STEPS:
        misses = []
        for moment in step.moments:
            knobs = [*KNOBS, f"SEED={next(seeds)}"]
            marker = work / f"paused-{len(misses)}-{step.sig}-{moment.pause}"
            before = artifact_state(art)
            code, missed = run_make(art, knobs, logfile, step.sig, moment, step.watched, marker)
            after = artifact_state(art)
            table.details.setdefault("make", []).append({"step": step.label, "moment": moment.label, "exit": code,
                                                         "missed": missed, "state": after})
            if missed is None:
                ok, found = judge(step, code, before, after)
                retried = f" (earlier moments came too late: {'; '.join(misses)})" if misses else ""
                table.add("make", f"{step.label}, {moment.label}{retried}", found,
                          f"interrupted; checkpoint {'/'.join(step.checkpoint) or 'loads'}, exports "
                          f"{'/'.join(step.exports)} as one set, archives previous, no temporary files", ok)
                exercised += 1
                break
            misses.append(f"{moment.label}: {missed}")
        else:
            table.add("make", f"{step.label}: NOT EXERCISED", "; ".join(misses),
                      "a signal while the phase runs (each moment above came too late)", None)
    table.add("make", "interruptions exercised", f"{exercised} of {len(STEPS)}")
    started = time.monotonic()
    code, _ = run_make(art, knobs, logfile)
    state = artifact_state(art)
    new = state["export_fingerprint"]
    ok = (code == 0 and state["exports_consistent"] and not state["problems"] and not state["leftovers"]
          and new != old and state["fingerprints"].get(contract.CHECKPOINT) == new)
    table.add("make", "`make` afterwards", f"exit {code} in {time.monotonic() - started:.0f} s; all 7 artifacts "
              f"of one new run ({new})", "completes, one consistent set", ok)
    before = logfile.stat().st_size
    code, _ = run_make(art, knobs, logfile)
    again = logfile.read_text(errors="replace")[before:]
    rebuilt = [w for w in ("model.train", "-m export", "serve.archive") if w in again]
    table.add("make", "`make` once more", f"exit {code}, rebuilt: {rebuilt or 'nothing'}", "nothing to do",
              code == 0 and not rebuilt)
