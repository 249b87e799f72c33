"""Build the TorchServe archives: charrnn.mar (one-shot) and charrnn_session.mar (sessions).

Usage: python -m serve.archive --torchscript artifacts/charrnn.torchscript.pt \
           --vocab artifacts/vocab.json --out artifacts/model_store

Each .mar holds the handler (serve/handler.py), the TorchScript step (serialized file), the
vocabulary (vocab.json, checked against the copy inside the TorchScript file when the worker
starts), its model-config.yaml (serve/config/<name>.yaml) and the project modules the handler
imports, as packages (data/, model/, export/, serve/) so `import serve.engine` works inside the
model directory. The module list is the engine's actual import closure, not a hand-kept list.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent / "config"
MODELS = ("charrnn", "charrnn_session")
VERSION = "1.0"


def shipped_modules() -> list[Path]:
    """Repository files (relative to ROOT) the handler imports, with their packages' __init__.py."""
    code = ("import sys, serve.handler; "
            "print('\\n'.join(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    files = set()
    for line in out.splitlines():
        path = Path(line).resolve()
        if path.suffix != ".py" or ROOT not in path.parents or path.parent == ROOT:
            continue
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".venv", "tests") or rel == Path("serve/handler.py"):
            continue
        files.add(rel)
        for parent in rel.parents:
            if parent != Path(".") and (ROOT / parent / "__init__.py").is_file():
                files.add(parent / "__init__.py")
    return sorted(files)


def build_archives(torchscript: str | Path, vocab_json: str | Path, out_dir: str | Path,
                   models: tuple[str, ...] = MODELS) -> list[Path]:
    """Write <out_dir>/<model>.mar for each model; returns their paths."""
    torchscript, vocab_json, out_dir = Path(torchscript), Path(vocab_json), Path(out_dir)
    for path in (torchscript, vocab_json):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (run `make export` first)")
    out_dir.mkdir(parents=True, exist_ok=True)
    archiver = shutil.which("torch-model-archiver", path=str(Path(sys.executable).parent)) \
        or shutil.which("torch-model-archiver")
    if archiver is None:
        raise SystemExit("error: torch-model-archiver not found (run `make setup`)")
    staging = Path(tempfile.mkdtemp(prefix="charrnn-archive-"))
    try:
        package = staging / "package"
        for rel in shipped_modules():
            (package / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, package / rel)
        vocab_copy = staging / "vocab.json"
        shutil.copy2(vocab_json, vocab_copy)
        written = []
        for name in models:
            config = staging / "config" / name / "model-config.yaml"  # the name TorchServe's docs use
            config.parent.mkdir(parents=True)
            shutil.copy2(CONFIG_DIR / f"{name}.yaml", config)
            # the archiver stages files in $TMPDIR/<model name>: give each build its own TMPDIR
            (staging / "tmp").mkdir(exist_ok=True)
            env = {**os.environ, "TMPDIR": str(staging / "tmp")}
            subprocess.run([archiver, "--model-name", name, "--version", VERSION,
                            "--handler", str(ROOT / "serve" / "handler.py"),
                            "--serialized-file", str(torchscript),
                            "--extra-files", f"{vocab_copy},{package}",
                            "--config-file", str(config),
                            "--export-path", str(out_dir), "--force"],
                           check=True, env=env)
            written.append(out_dir / f"{name}.mar")
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build the TorchServe archives of the CharRNN.")
    p.add_argument("--torchscript", default="artifacts/charrnn.torchscript.pt")
    p.add_argument("--vocab", default="artifacts/vocab.json")
    p.add_argument("--out", default="artifacts/model_store")
    args = p.parse_args(argv)
    for path in build_archives(args.torchscript, args.vocab, args.out):
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
