"""The ceiling of `make bench-serving`: a model store holding the shipped charrnn.mar as built
(byte for byte) and ceiling.mar, an archive of the do-nothing handler (bench/ceiling_handler.py)
whose model-config.yaml carries the shipped archive's own TorchServe settings (workers,
batchSize, maxBatchDelay, responseTimeout: every top-level key of charrnn.mar's
model-config.yaml; its `handler:` section is the charrnn handler's and is left out). Both are
loaded in the same TorchServe, so the do-nothing handler measures that server's own ceiling
under the shipped configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from core import contract

CEILING = "ceiling"  # the do-nothing model's name in the bench's TorchServe
HANDLER = Path(__file__).resolve().parent / "ceiling_handler.py"


def model_config(mar: Path) -> dict:
    """The TorchServe settings (top-level keys) of an archive's model-config.yaml."""
    import zipfile

    with zipfile.ZipFile(mar) as z:
        config = yaml.safe_load(z.read("model-config.yaml")) or {}
    return {k: v for k, v in config.items() if k != "handler"}


def build_store(shipped_store: Path, out: Path, models: tuple[str, ...] = (contract.MODEL,)) -> Path:
    """`out` as a model store: copies of `models`' archives from `shipped_store` and
    ceiling.mar with the settings of the first one's model-config.yaml. Returns `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for m in models:
        shutil.copy2(shipped_store / contract.archive(m), out / contract.archive(m))
    settings = model_config(shipped_store / contract.archive(models[0]))
    archiver = shutil.which("torch-model-archiver", path=str(Path(sys.executable).parent)) \
        or shutil.which("torch-model-archiver")
    if archiver is None:
        raise RuntimeError("torch-model-archiver not found (run `make setup`)")
    with tempfile.TemporaryDirectory(prefix="charrnn-ceiling-") as tmp:
        config = Path(tmp) / "model-config.yaml"
        config.write_text("# bench/ceiling.py: the shipped archive's TorchServe settings, do-nothing handler\n"
                          + yaml.safe_dump(settings, sort_keys=False))
        (Path(tmp) / "stage").mkdir()
        subprocess.run([archiver, "--model-name", CEILING, "--version", "1.0", "--handler", str(HANDLER),
                        "--config-file", str(config), "--export-path", str(out), "--force"],
                       check=True, env={**os.environ, "TMPDIR": str(Path(tmp) / "stage")},
                       capture_output=True, text=True)
    return out
