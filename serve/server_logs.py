"""What a TorchServe instance's logs (<run dir>/logs) say: why a model cannot become READY, the
tail shown when start-up fails, and how many workers died.

`log_sizes` marks where a start-up began, so only what it wrote is read."""

from __future__ import annotations

import re
from pathlib import Path

from core import contract

# the last line of a Python traceback in a worker's output, e.g.
# "... W-9000-charrnn_1.0-stdout MODEL_LOG - core.errors.ArtifactError: <message>"
_WORKER_ERROR = re.compile(r"W-\d+-(?P<model>.+?)_[^_\s]+-stdout MODEL_LOG - "
                           r"(?P<error>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)(?::.*)?)$")


def log_sizes(run_dir: Path) -> dict[str, int]:
    logs = run_dir / "logs"
    return {name: (logs / name).stat().st_size if (logs / name).is_file() else 0
            for name in ("ts_log.log", "model_log.log", "stdout.log")}


def new_log_lines(run_dir: Path, name: str, since: dict[str, int]) -> list[str]:
    path = run_dir / "logs" / name
    try:
        with open(path, "rb") as fh:
            fh.seek(since.get(name, 0))
            return fh.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def startup_failure(run_dir: Path, model: str, since: dict[str, int], registered: bool) -> str | None:
    """Why `model` cannot become READY, from the logs written since `since`: TorchServe could
    not load its archive (`registered` False), or a worker died while loading it."""
    if not registered:
        lines = new_log_lines(run_dir, "ts_log.log", since)
        for i, line in enumerate(lines):
            if f"Failed to load model: {contract.archive(model)}" in line:
                detail = lines[i + 1].strip() if i + 1 < len(lines) else ""
                return f"TorchServe could not load {contract.archive(model)}: {detail or 'see ts_log.log'}"
        return f"TorchServe has no model {model} (its archive failed to load; see ts_log.log)"
    for line in new_log_lines(run_dir, "model_log.log", since):
        match = _WORKER_ERROR.search(line)
        if match and match.group("model") == model:
            return f"a {model} worker died while loading the model: {match.group('error')}"
    return None


def log_tail(run_dir: Path, lines: int = 40) -> str:
    out = []
    for name in ("ts_log.log", "model_log.log", "stdout.log"):
        path = run_dir / "logs" / name
        if path.is_file():
            out.append(f"--- {path} (last {lines} lines)")
            out.extend(path.read_text(errors="replace").splitlines()[-lines:])
    return "\n".join(out)


def worker_deaths(run_dir: Path) -> int:
    """Worker deaths TorchServe logged ("Worker disconnected"; each line is written twice)."""
    path = run_dir / "logs" / "ts_log.log"
    if not path.is_file():
        return 0
    with open(path, errors="replace") as fh:
        return len({line for line in fh if "Worker disconnected" in line})


def log_lines(run_dir: Path, name: str) -> list[str]:
    """The lines of <run_dir>/logs/<name> (e.g. model_metrics.log); [] when there is none."""
    path = run_dir / "logs" / name
    return path.read_text(errors="replace").splitlines() if path.is_file() else []
