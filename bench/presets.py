"""Training presets: presets/NAME.mk, read by make (`make train PRESET=ibge`) and by the benchmarks.

A preset file is a list of `VARIABLE ?= value` lines (comments with #), and may `include
presets/OTHER.mk` for the values it does not set itself: make includes it before its own
defaults, so a preset value replaces the default and a command-line value replaces both.
Every training knob must be set, so that make and the benchmarks train the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from model.train import TrainConfig

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
# make variable -> (TrainConfig field, type)
KNOBS = {
    "HIDDEN": ("hidden_size", int), "LAYERS": ("num_layers", int), "CELL": ("cell", str),
    "EPOCHS": ("epochs", int), "BATCH": ("batch_size", int), "LR": ("lr", float),
    "LR_DECAY": ("lr_decay", float), "LR_SCHEDULE": ("lr_schedule", str), "PATIENCE": ("patience", int),
    "VAL_FRACTION": ("val_fraction", float), "COUNT_WEIGHTING": ("count_weighting", str),
    "LENGTH_POOL": ("length_pool", int),
    "MAX_SECONDS": ("max_seconds", float), "SEED": ("seed", int), "THREADS": ("threads", int),
}
OTHER = ("CORPUS", "TITLE_CASE", "ART")
LINE = re.compile(r"^([A-Z_]+)\s*\?=\s*(.*?)\s*$")


class PresetError(ValueError):
    pass


@dataclass(frozen=True)
class Preset:
    name: str
    corpus: str
    title_case: bool
    art: str
    config: TrainConfig


INCLUDE = re.compile(r"^include\s+presets/([\w-]+)\.mk$")


def read_preset_vars(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, str]:
    """The preset's values. `include presets/OTHER.mk` takes OTHER's values for every variable
    not set before it (make's `?=`: the first value wins), so a preset can be a few overrides of
    another."""
    if path in _seen:
        raise PresetError(f"{path}: includes itself ({' -> '.join(p.name for p in (*_seen, path))})")
    values: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        inc = INCLUDE.match(line)
        if inc:
            other = path.parent / f"{inc.group(1)}.mk"
            if not other.is_file():
                raise PresetError(f"{path}:{lineno}: includes {other.name}, which does not exist")
            for key, value in read_preset_vars(other, (*_seen, path)).items():
                values.setdefault(key, value)
            continue
        m = LINE.match(line)
        if not m or "$" in m.group(2):
            raise PresetError(f"{path}:{lineno}: expected 'VARIABLE ?= plain value' or 'include presets/NAME.mk', "
                              f"got {raw!r}")
        if m.group(1) not in KNOBS and m.group(1) not in OTHER:
            raise PresetError(f"{path}:{lineno}: unknown variable {m.group(1)}")
        values.setdefault(m.group(1), m.group(2))
    if not _seen:
        missing = [k for k in (*KNOBS, *OTHER) if k not in values]
        if missing:
            raise PresetError(f"{path}: the preset must set {', '.join(missing)}")
    return values


def load_preset(name: str, preset_dir: Path = PRESET_DIR) -> Preset:
    path = preset_dir / f"{name}.mk"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in preset_dir.glob("*.mk")))
        raise PresetError(f"no preset {name!r} ({path}); known: {known}")
    values = read_preset_vars(path)
    options = {field: kind(values[var]) for var, (field, kind) in KNOBS.items()}
    return Preset(name, values["CORPUS"], values["TITLE_CASE"] in ("1", "yes", "true"), values["ART"],
                  TrainConfig(**options, title_case=values["TITLE_CASE"] in ("1", "yes", "true")))
