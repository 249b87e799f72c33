"""`make soak`: reliability runs against a real TorchServe, bounded to a few minutes, ending in
one summary table (printed, and written to <out-dir>/summary.json and summary.md).

    python -m soak [--art-dir artifacts] [--out-dir artifacts/soak] [--requests 5000] [--threads 6]
                   [--sections corrupt,make,sessions,fuzz,kill,restart] [--seed 0]

Sections (README.md "Reliability"):
  corrupt   every artifact of --art-dir and its .mar truncated, bit-flipped, with a swapped
            vocabulary: each loader refuses with one message naming the file (or the file loads
            identical); TorchServe started on a bad .mar fails fast instead of hanging
  make      a real `make` into a temporary ART, then retrains interrupted (SIGINT during
            training, SIGTERM during export) at moments the harness observed
            (soak/interrupted_make.py): the previous artifacts stay valid, or the whole new set
            when the signal met the export's commit; an interruption that could not be
            exercised is reported as such; `make` then completes
  sessions  hundreds of sessions open at once (no capacity errors), `append` for an unknown
            session (404, send `text`), requests in flight on one session, then a churn of
            sessions with the session worker's resident memory measured
  fuzz      >= 5,000 seeded requests of every bad-input class and valid ones whose answers are
            known (loopback only, a few threads): responses by status, 5xx, worker restarts
  kill      a one-shot worker killed (SIGKILL) during a bounded load: failed requests, time
            until every request succeeds again, TorchServe's restart of the worker
  restart   the server stopped and started under an open session: a clear error while it is
            down, then the session's next keystroke answered correctly (rebuilt from its text)

The TorchServe instance (serve.instance.Instance) runs from a temporary folder on free loopback
ports, with the archives of --art-dir/model_store (`make soak` builds them), and is always
stopped. The sections live in soak/sections.py (and soak/interrupted_make.py), the summary table
in soak/report.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from core import contract
from serve.engine import Engine
from serve.instance import Instance
from soak.interrupted_make import section_make
from soak.report import Table, log
from soak.sections import (
    section_corrupt,
    section_fuzz,
    section_kill,
    section_restart,
    section_sessions,
)
from tools.machine import machine_info, machine_line
from tools.result_page import command_line, write_result_page

SECTIONS = ("corrupt", "make", "sessions", "fuzz", "kill", "restart")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--art-dir", default=contract.ART_DIR, type=Path)
    p.add_argument("--out-dir", default=None, type=Path, help="default: <art-dir>/soak")
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--threads", type=int, default=6)
    p.add_argument("--flips", type=int, default=20, help="bit flips per artifact")
    p.add_argument("--churn", type=int, default=400, help="sessions in the churn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--page", default=None, help="also write the summary as this result page (docs/results/soak.md)")
    args = p.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        p.error(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    art = args.art_dir.resolve()
    out = (args.out_dir or art / "soak").resolve()
    store = art / contract.MODEL_STORE
    for needed in (art / contract.TORCHSCRIPT, art / contract.VOCAB, *(store / a for a in contract.ARCHIVES)):
        if not needed.is_file():
            raise SystemExit(f"error: {needed} not found: run `make soak` (it builds them)")
    measured_on = machine_info()  # the result page's stamp: date, load and torch's threads at the start
    torch.set_num_threads(1)  # as in the workers: the in-process reference answers match exactly
    engine = Engine.from_artifacts(art / contract.TORCHSCRIPT, art / contract.VOCAB)
    table = Table()
    header = f"{machine_line(measured_on)}; model {engine.fingerprint} ({art})"
    log(header)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="charrnn-soak-"))
    inst = None
    try:
        if "corrupt" in sections:
            section_corrupt(table, art, work, args.flips, args.seed)
        if "make" in sections:
            section_make(table, work, args.seed)
        served = [s for s in ("sessions", "fuzz", "kill", "restart") if s in sections]
        if served:
            inst = Instance(work / "served" / "run", store)
            table.add("server", "TorchServe started (archives checked first)", f"in {inst.start():.1f} s")
            for name in served:
                section_started = time.monotonic()
                if name == "sessions":
                    section_sessions(table, inst, engine, args.churn, min(args.threads, 4))
                elif name == "fuzz":
                    section_fuzz(table, inst, engine, args.requests, args.threads, args.seed)
                elif name == "kill":
                    section_kill(table, inst, engine, min(args.threads, 4), args.seed)
                elif name == "restart":
                    section_restart(table, inst, engine)
                log(f"{name}: {time.monotonic() - section_started:.0f} s")
    except Exception as exc:
        table.add("soak", "harness error", f"{type(exc).__name__}: {exc}"[:300], "none", False)
        raise
    finally:
        if inst is not None:
            inst.stop()
        total = time.monotonic() - started
        table.add("soak", "total time", f"{total / 60:.1f} min", "a few minutes")
        write_summary(table, out, header, sections, args)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n## make soak: {header}\n\n{table.markdown()}\n")
    if args.page:  # a run that got this far (a harness error did not) replaces the result page
        write_result_page(args.page, "Reliability: `make soak`", f"Model {engine.fingerprint}.\n\n{table.markdown()}",
                          machine=measured_on, command=command_line("soak", argv))
    if table.failed:
        print(f"FAILED: {len(table.failed)} figure(s) missed their target (details: {out}/summary.json)")
        return 1
    print(f"all figures met their targets (details: {out}/summary.json)")
    return 0


def write_summary(table: Table, out: Path, header: str, sections: list[str], args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m soak " + " ".join(a for a in sys.argv[1:]) if sys.argv[1:] else "python -m soak"
    (out / "summary.json").write_text(json.dumps({
        "run": header, "command": command, "sections": sections, "requests": args.requests,
        "threads": args.threads, "seed": args.seed, "rows": table.rows, "details": table.details,
    }, indent=1, ensure_ascii=False, default=str) + "\n")
    (out / "summary.md").write_text(f"# make soak\n\n{header}\n\n`{command}`\n\n{table.markdown()}\n")


if __name__ == "__main__":
    raise SystemExit(main())
