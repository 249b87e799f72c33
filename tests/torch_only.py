"""A Python that sees PyTorch alone: this interpreter, with every installed package hidden but
torch, what torch requires, and the repository's own packages (as on a GPU machine whose Python
has PyTorch and nothing else: torch's wheel does not require numpy). For the tests of what must
run there: `make gpu-check`, tools/gpu_run.sh, `make names DEVICE=cuda`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# installed in the hidden Python as its sitecustomize: it hides every top-level module that an
# installed distribution provides unless that distribution is torch or one torch requires
SITECUSTOMIZE = r'''
import importlib.abc, importlib.metadata as md, re, sys

def _closure(name, seen):
    key = name.lower().replace("_", "-")
    if key in seen:
        return
    seen.add(key)
    try:
        requires = md.requires(name) or []
    except md.PackageNotFoundError:
        return
    for req in requires:
        if "extra ==" in req:
            continue
        _closure(re.match(r"[A-Za-z0-9._-]+", req).group(0), seen)

_allowed = set()
_closure("torch", _allowed)
_hidden = {top for top, dists in md.packages_distributions().items()
           if not any(d.lower().replace("_", "-") in _allowed for d in dists)} - set(sys.stdlib_module_names)
_hidden = {top for top in _hidden if not top.startswith("__editable__")}  # the project installed editable

class _TorchOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in _hidden and top not in REPO_PACKAGES:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: PyTorch alone)", name=name)
        return None

sys.meta_path.insert(0, _TorchOnly())
'''


def torch_only_python(folder: Path, repo: Path) -> Path:
    """An executable `python` in `folder` that runs this interpreter seeing PyTorch alone."""
    site = folder / "site"
    site.mkdir(parents=True, exist_ok=True)
    packages = sorted(p.name for p in repo.iterdir() if (p / "__init__.py").is_file())
    (site / "sitecustomize.py").write_text(f"REPO_PACKAGES = {packages!r}\n{SITECUSTOMIZE}", encoding="utf-8")
    python = folder / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n',
                      encoding="utf-8")
    python.chmod(0o755)
    return python
