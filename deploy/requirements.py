"""The packages a replica image installs, at the exact pins of pyproject.toml (their one home):
what the TorchServe workers and deploy/replica.py import, nothing for training, export or tests.
tests/test_deploy.py checks the list against the imports of the modules the image runs.

  python3 deploy/requirements.py [--only NAME ...] [--except NAME ...]    one "name==version" a line

Runs with any Python 3.11 alone (no project import): the image runs it before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# torch: the step and the decoding loop; numpy, onnxruntime: the one-graph greedy decoder;
# tqdm: imported by model/ (the archive ships it); torchserve and pyyaml: the server and its workers
SERVING = ("torch", "numpy", "onnxruntime", "tqdm", "torchserve", "pyyaml")


def pins(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """name -> "name==version" of every dependency of the project (exact pins only)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    out = {}
    for spec in project["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", spec.strip())
        if not m:
            raise SystemExit(f"{pyproject}: {spec!r} is not an exact pin (name==version)")
        out[m.group(1).lower()] = f"{m.group(1)}=={m.group(2)}"
    return out


def serving(only: list[str] | None = None, exclude: list[str] | None = None) -> list[str]:
    found = pins()
    missing = [n for n in SERVING if n not in found]
    if missing:
        raise SystemExit(f"{PYPROJECT}: no pin for {missing}")
    names = [n for n in SERVING if (not only or n in only) and n not in (exclude or [])]
    return [found[n] for n in names]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="The replica image's pinned packages.")
    p.add_argument("--only", action="append", help="only this package (repeat)")
    p.add_argument("--except", dest="exclude", action="append", help="all but this package (repeat)")
    args = p.parse_args(argv)
    print("\n".join(serving(args.only, args.exclude)))


if __name__ == "__main__":
    main()
