"""Presets (presets/NAME.toml, model/config.py): plain overrides of TrainConfig's defaults, read by
model.train (`--preset`), the Makefile (`PRESET=`) and the benchmarks alike; includes; errors that
name the file and what is wrong; and the Makefile as a table of contents that passes model.train
only what the user set and retrains when a knob or a preset file changes."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from model.config import PRESET_DIR, PresetError, TrainConfig, known_presets, load_preset
from model.train import main as train_main
from model.train import parse_args
from tests.conftest import NAMES

ROOT = Path(__file__).resolve().parent.parent
# make's own variables that would carry an outer `make test VAR=...` into the makes run here
MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
KNOBS = ("CORPUS", "TITLE_CASE", "HIDDEN", "LAYERS", "CELL", "EPOCHS", "BATCH", "LR", "LR_DECAY", "LR_SCHEDULE",
         "PATIENCE", "MAX_SECONDS", "COUNT_WEIGHTING", "LENGTH_POOL", "VAL_FRACTION", "THREADS", "SEED", "DEVICE",
         "PRESET", "PRESET_DIR", "ART")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---- the loader ----

def test_shipped_presets_are_overrides_of_the_defaults():
    assert known_presets() == ["ibge", "ibge-ensemble", "ibge-rnn", "ibge-single", "ibge-variety"]
    single = load_preset("ibge-single")
    # the default model (the census GRU on make's default corpus), trained longer
    assert single.config == replace(TrainConfig(), max_seconds=300.0) and single.values == {"max_seconds": 300.0}
    assert (single.config.cell, single.config.hidden_size, single.config.threads) == ("gru", 96, 1)
    assert "corpus" not in single.values and not single.config.title_case  # make builds its corpus (make data)
    for name, changed in (
            ("ibge-variety", {"count_weighting": "none"}),
            ("ibge-rnn", {"cell": "rnn", "hidden_size": 128, "lr": 0.003, "count_weighting": "none"}),
            # an ensemble of one member per usable core, the count weightings in turn
            ("ibge-ensemble", {"members": 0, "member_weightings": "sqrt,none"}),
            # the flagship: the same GRU distilled from the ensemble's checkpoint, which make builds
            ("ibge", {"teacher": f"{load_preset('ibge-ensemble').art}/checkpoint.pt"})):
        preset = load_preset(name)
        assert preset.config == replace(single.config, **changed)  # ibge-single with a few values of its own
        assert preset.files == (PRESET_DIR / f"{name}.toml", PRESET_DIR / "ibge-single.toml")
        assert preset.art == f"artifacts/{name}"  # each its own folder: no preset overwrites another's model


def test_an_include_fills_in_what_a_preset_does_not_set(tmp_path):
    write(tmp_path / "base.toml", 'cell = "gru"\nhidden_size = 40\nmax_seconds = 5  # an int where a float goes\n')
    write(tmp_path / "mid.toml", 'include = "base"\nhidden_size = 30\nlr = 0.02\n')
    write(tmp_path / "top.toml", 'include = "mid"\nhidden_size = 20\n')
    top = load_preset("top", tmp_path)
    assert top.config == replace(TrainConfig(), cell="gru", hidden_size=20, lr=0.02, max_seconds=5.0)
    assert isinstance(top.config.max_seconds, float)
    assert top.files == tuple(tmp_path / f"{n}.toml" for n in ("top", "mid", "base"))


@pytest.mark.parametrize("files, name, message", [
    ({"a": "hiden_size = 96\n"}, "a", r"a\.toml: unknown key 'hiden_size' \(did you mean 'hidden_size'\?\)"),
    ({"a": "colour = 1\n"}, "a", r"unknown key 'colour' \(known: corpus, title_case, hidden_size"),
    ({"a": 'hidden_size = "96"\n'}, "a", r"a\.toml: hidden_size must be int, got '96'"),
    ({"a": "hidden_size = 96.0\n"}, "a", "hidden_size must be int, got 96.0"),
    ({"a": "title_case = 1\n"}, "a", "title_case must be bool, got 1"),
    ({"a": "lr = true\n"}, "a", "lr must be float, got True"),
    ({"a": 'cell = "lstm"\n'}, "a", r"a\.toml: cell must be one of \('rnn', 'gru'\), got 'lstm'"),
    ({"a": "hidden_size = \n"}, "a", r"a\.toml: not valid TOML"),
    ({"a": "include = 3\n"}, "a", "include must be a preset name"),
    ({"a": "hidden_size = 1\n"}, "zzz", r"no preset 'zzz' \(.*zzz\.toml; known: a\)"),
    ({"a": 'include = "gone"\n'}, "a", r"no preset 'gone' \(.*gone\.toml; included by .*a\.toml\)"),
    ({"a": 'include = "a"\n'}, "a", r"circular include \(a -> a\)"),
    ({"a": 'include = "b"\n', "b": 'include = "c"\n', "c": 'include = "a"\n'}, "a", r"circular include \(a -> b -> c -> a\)"),
])
def test_a_bad_preset_is_refused_naming_the_file_and_the_fault(tmp_path, files, name, message):
    for stem, text in files.items():
        write(tmp_path / f"{stem}.toml", text)
    with pytest.raises(PresetError, match=message):
        load_preset(name, tmp_path)


# ---- model.train reads presets itself ----

def test_model_train_takes_a_preset_and_options_given_still_win(tmp_path, capsys):
    write(tmp_path / "p.toml", 'cell = "gru"\nhidden_size = 40\ntitle_case = true\n')
    cfg, _ = parse_args(["--preset", "p", "--preset-dir", str(tmp_path), "--hidden", "9", "--no-title-case"])
    assert cfg == replace(TrainConfig(), cell="gru", hidden_size=9, title_case=False)
    with pytest.raises(SystemExit):  # --help shows the preset's values as the defaults
        parse_args(["--preset", "p", "--preset-dir", str(tmp_path), "--help"])
    assert re.search(r"--hidden HIDDEN_SIZE\s+hidden units per layer \(default: 40\)", capsys.readouterr().out)
    for argv, message in ((["--preset", "nope", "--preset-dir", str(tmp_path)], "no preset 'nope'"),
                          (["--count-weighting", "cube"], "invalid choice")):
        with pytest.raises(SystemExit) as exited:
            parse_args(argv)
        assert exited.value.code == 2 and message in capsys.readouterr().err


def test_a_preset_trains_and_the_checkpoint_records_the_whole_configuration(tmp_path):
    corpus = write(tmp_path / "names.txt", "".join(f"{n}\n" for n in NAMES))
    write(tmp_path / "tiny.toml", f'corpus = "{corpus}"\nhidden_size = 8\nepochs = 2\nthreads = 1\n')
    out = tmp_path / "art" / "checkpoint.pt"
    train_main(["--preset", "tiny", "--preset-dir", str(tmp_path), "--out", str(out), "--seed", "3", "--no-progress"])
    args = torch.load(out, weights_only=True)["train_args"]
    assert args == asdict(replace(TrainConfig(), corpus=str(corpus), hidden_size=8, epochs=2, threads=1, seed=3))


# ---- the Makefile ----

def make(*args: str, env_extra: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in MAKE_ENV and k not in KNOBS}
    env.update(env_extra or {})
    return subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=check, timeout=120)


def train_command(*args: str, env_extra: dict | None = None) -> list[str]:
    """model.train's arguments in `make -n train ...`, without the interpreter and `--out FILE`."""
    lines = [line for line in make("-n", "train", *args, env_extra=env_extra).stdout.splitlines()
             if " -m model.train " in line]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0])
    words = words[words.index("model.train") + 1:]
    out = words.index("--out")
    return words[:out] + words[out + 2:] + ["--out=" + words[out + 1]]


def test_make_passes_model_train_only_what_the_user_set(tmp_path):
    art = tmp_path / "art"
    assert train_command(f"ART={art}") == ["--corpus", f"{art}/corpus.txt", f"--out={art}/checkpoint.pt"]
    assert train_command(f"ART={art}", "HIDDEN=64", "THREADS=", "LR_SCHEDULE=") == [
        "--corpus", f"{art}/corpus.txt", "--hidden", "64", f"--out={art}/checkpoint.pt"]  # empty = not set
    assert train_command(f"ART={art}", env_extra={"EPOCHS": "7"}) == [
        "--corpus", f"{art}/corpus.txt", "--epochs", "7", f"--out={art}/checkpoint.pt"]  # the environment counts
    # a preset: its own folder, and the corpus make builds there (the shipped presets name none)
    assert train_command("PRESET=ibge-single") == ["--preset", "ibge-single", "--corpus",
                                                   "artifacts/ibge-single/corpus.txt",
                                                   "--out=artifacts/ibge-single/checkpoint.pt"]
    assert train_command("PRESET=ibge-variety", "TITLE_CASE=0", "LR=0.02") == [
        "--preset", "ibge-variety", "--corpus", "artifacts/ibge-variety/corpus.txt", "--lr", "0.02",
        "--no-title-case", "--out=artifacts/ibge-variety/checkpoint.pt"]
    # a preset that names its corpus: model.train reads it from the preset itself
    write(tmp_path / "presets" / "mine.toml", f'corpus = "{tmp_path / "mine.txt"}"\n')
    write(tmp_path / "mine.txt", "Ana\n")
    assert train_command("PRESET=mine", f"PRESET_DIR={tmp_path / 'presets'}") == [
        "--preset", "mine", "--preset-dir", str(tmp_path / "presets"), "--out=artifacts/mine/checkpoint.pt"]


@pytest.mark.parametrize("preset", known_presets())
def test_every_shipped_preset_builds_from_the_repository_alone(preset):
    """`make PRESET=X` plans the whole pipeline from files in the repository: the census corpus
    built into the preset's own folder (data/census/, no outside corpus), then its training on it."""
    plan = make("-n", "-B", f"PRESET={preset}").stdout
    assert f"-m data.build_default --out artifacts/{preset}/corpus.txt" in plan
    assert f"-m model.train --preset {preset} --corpus artifacts/{preset}/corpus.txt" in plan
    assert f"--out artifacts/{preset}/model_store" in plan  # through to the archives
    corpus = load_preset(preset).values.get("corpus")
    assert corpus is None or (ROOT / corpus).resolve().is_relative_to(ROOT), f"{preset} reads {corpus} outside the repository"


def test_every_make_knob_reaches_its_training_field(tmp_path):
    knobs = {"CORPUS": str(tmp_path / "x.txt"), "TITLE_CASE": "1", "HIDDEN": "33", "LAYERS": "2", "CELL": "gru",
             "EPOCHS": "7", "BATCH": "9", "LR": "0.02", "LR_DECAY": "0.9", "LR_SCHEDULE": "cosine", "PATIENCE": "3",
             "MAX_SECONDS": "5", "COUNT_WEIGHTING": "log", "LENGTH_POOL": "4", "VAL_FRACTION": "0.2", "THREADS": "2",
             "SEED": "5", "DEVICE": "cuda"}
    write(tmp_path / "x.txt", "Ana\n")
    words = train_command(f"ART={tmp_path}", *(f"{k}={v}" for k, v in knobs.items()))
    cfg, _ = parse_args(words)
    assert cfg == TrainConfig(corpus=str(tmp_path / "x.txt"), title_case=True, hidden_size=33, num_layers=2,
                              cell="gru", epochs=7, batch_size=9, lr=0.02, lr_decay=0.9, lr_schedule="cosine",
                              patience=3, max_seconds=5.0, count_weighting="log", length_pool=4, val_fraction=0.2,
                              threads=2, seed=5, device="cuda")
    makefile = (ROOT / "Makefile").read_text()
    # the defaults are TrainConfig's alone: no knob has one in the Makefile (but the corpus file,
    # which make builds or takes from the preset, and must know to rebuild when it changes)
    for knob in set(knobs) - {"CORPUS"}:
        assert not re.search(rf"^{knob}\s*\?=", makefile, re.MULTILINE), knob


def test_make_refuses_an_unknown_preset_with_the_loaders_message():
    done = make("-n", "train", "PRESET=nope", check=False)
    assert done.returncode != 0
    assert "no preset 'nope'" in done.stderr and "known: ibge, ibge-ensemble, ibge-rnn, ibge-single, ibge-variety" in done.stderr


def stand_in_python(tmp_path: Path) -> tuple[Path, Path]:
    """(an interpreter for make's PY= that records each command line in the log and touches the
    file after --out, as model.train would write its checkpoint; that log)."""
    calls = tmp_path / "calls.log"
    python = write(tmp_path / "python", f"""#!/bin/bash
echo "$*" >> {calls}
for ((i = 1; i <= $#; i++)); do [ "${{!i}}" = --out ] && j=$((i + 1)) && touch "${{!j}}"; done
exit 0
""")
    python.chmod(0o755)
    return python, calls


def ordered_clock():
    """touch(path): sets the file's time on a clock of our own, in order, all within the last
    second (no clock resolution matters, and the sources stay older unless edited this very second)."""
    ticks = iter(time.time() - 1 + k / 100 for k in range(100))

    def touch(path: Path) -> None:
        t = next(ticks)
        os.utime(path, (t, t))
    return touch


def test_make_retrains_when_a_knob_the_preset_or_the_corpus_changes(tmp_path):
    """A real make, with a stand-in interpreter (PY=) that records model.train's command and
    writes the checkpoint; every file's time is set explicitly, so no clock resolution matters."""
    python, calls = stand_in_python(tmp_path)
    corpus = write(tmp_path / "names.txt", "Ana\nBruno\n")
    presets = tmp_path / "presets"
    base = write(presets / "base.toml", f'corpus = "{corpus}"\nhidden_size = 8\n')
    top = write(presets / "top.toml", 'include = "base"\nepochs = 2\n')
    art = tmp_path / "art"
    checkpoint = art / "checkpoint.pt"
    common = [f"ART={art}", "PRESET=top", f"PRESET_DIR={presets}", f"PY={python}", "train"]
    stamp = art / ".train-args"  # make's record of the knobs given
    touch = ordered_clock()

    for path in (corpus, base, top):
        touch(path)

    def trained(*extra: str) -> bool:
        before = calls.read_text() if calls.exists() else ""
        make(*common, *extra)
        after = calls.read_text() if calls.exists() else ""
        touch(stamp)  # as make writes them: the stamp, then the checkpoint
        touch(checkpoint)
        return after != before

    assert trained() and f"--preset top --preset-dir {presets}" in calls.read_text()
    assert not trained()  # nothing changed
    touch(base)  # the included preset changed
    assert trained() and not trained()
    assert trained("HIDDEN=64") and not trained("HIDDEN=64")
    assert trained()  # the knob is gone again
    touch(corpus)
    assert trained() and not trained()


def test_make_builds_a_preset_teacher_first_and_retrains_the_student_when_it_changes(tmp_path):
    """A student preset (teacher = DIR/NAME/checkpoint.pt of preset NAME): make trains the teacher
    first, as `make train PRESET=NAME` would (the student's knobs do not reach it), and retrains
    the student when the teacher's checkpoint changes; the stand-in interpreter of the test above."""
    python, calls = stand_in_python(tmp_path)
    corpus = write(tmp_path / "names.txt", "Ana\nBruno\n")
    presets = tmp_path / "presets"
    teacher = tmp_path / "teach" / "checkpoint.pt"
    write(presets / "teach.toml", f'corpus = "{corpus}"\nmembers = 2\n')
    write(presets / "stud.toml", f'corpus = "{corpus}"\nteacher = "{teacher}"\n')
    touch = ordered_clock()

    for path in (corpus, presets / "teach.toml", presets / "stud.toml"):
        touch(path)

    def trained(*extra: str) -> list[str]:
        before = calls.read_text() if calls.exists() else ""
        make(f"ART={tmp_path / 'stud'}", "PRESET=stud", f"PRESET_DIR={presets}", f"PY={python}", "train", *extra)
        new = (calls.read_text() if calls.exists() else "")[len(before):].splitlines()
        for folder in ("teach", "stud"):  # as make writes them: the stamp, then the checkpoint
            if any(f"--out {tmp_path / folder}/" in line for line in new):
                touch(tmp_path / folder / ".train-args")
                touch(tmp_path / folder / "checkpoint.pt")
        return [line.split(" --preset ")[1].split()[0] for line in new]

    first = trained("MAX_SECONDS=5")
    assert first == ["teach", "stud"]  # the teacher first
    lines = calls.read_text().splitlines()
    assert "--max-seconds" not in lines[0] and f"--out {teacher}" in lines[0]  # the student's knob stays its own
    assert "--max-seconds 5" in lines[1]
    assert trained("MAX_SECONDS=5") == []  # nothing changed
    touch(teacher)  # a new teacher: the student retrains, the teacher stays
    assert trained("MAX_SECONDS=5") == ["stud"]
    touch(presets / "teach.toml")  # the teacher's preset changed: both
    assert trained("MAX_SECONDS=5") == ["teach", "stud"]
    # the student cannot take other names or another split than its teacher's: refused before any training
    for knob in (f"CORPUS={corpus}", "TITLE_CASE=1", "VAL_FRACTION=0.2"):
        done = make(f"ART={tmp_path / 'stud'}", "PRESET=stud", f"PRESET_DIR={presets}", f"PY={python}", "train", knob,
                    check=False)
        assert done.returncode != 0 and "CORPUS, TITLE_CASE and VAL_FRACTION cannot change here" in done.stderr, knob


# ---- docs/training.md's table of the shipped presets ----

TRAINING_FACTS = {  # a phrase of the table's training column -> the field it states (value parsed)
    r"batch (\d+)": ("batch_size", int),
    r"lr ([\d.]+)": ("lr", float),
    r"(cosine)": ("lr_schedule", str),
    r"over (\d+) s": ("max_seconds", float),
    r"(square root) of their count": ("count_weighting", lambda _: "sqrt"),
    r"(no count weighting)": ("count_weighting", lambda _: "none"),
    r"(no length pools)": ("length_pool", lambda _: 0),
    r"(\d+) thread": ("threads", int),
    r"(one member per usable core)": ("members", lambda _: 0),
    r"count weightings ([a-z]+(?:,[a-z]+)+) in turn": ("member_weightings", str),
    r"distilled from `([\w-]+)`": ("teacher", lambda name: f"{load_preset(name).art}/checkpoint.pt"),
}
FIELD_NAMES = [f for f in asdict(TrainConfig()) if f != "extra"]
MODEL_CELL = re.compile(r"(GRU|tanh RNN) (\d+)×(\d+) \(([\d,]+) parameters\)")


def preset_rows() -> dict[str, tuple[str, str]]:
    """name -> (model, training) of the table headed | preset | model | training |."""
    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    table = text[text.index("| preset | model | training |"):].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        m = re.match(r"^\| `([\w-]+)` \| (.+?) \| (.+?) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_the_training_page_describes_each_shipped_preset_as_its_file_says():
    """Every fact the table states (cell, size, parameters, batch, lr, schedule, budget, count
    weighting, pools, threads; "as `X`": every other knob as preset X) is the preset's own."""
    from core.vocab import Vocab
    from data.build_default import census_corpus as default_corpus
    from data.corpus import read_corpus
    from model.charrnn import CharRNN, ModelConfig

    rows = preset_rows()
    assert set(rows) == set(known_presets()), "docs/training.md's preset table lists other presets than presets/"
    model_fields = ("cell", "num_layers", "hidden_size")
    for name, (model, training) in rows.items():
        config, stated = load_preset(name).config, set()
        m = MODEL_CELL.fullmatch(model)
        if m:
            cell, layers, hidden, params = m.groups()
            assert (config.cell, config.num_layers, config.hidden_size) == \
                ({"GRU": "gru", "tanh RNN": "rnn"}[cell], int(layers), int(hidden)), name
            stated |= set(model_fields)
            if "corpus" not in load_preset(name).values:  # make's default corpus, built from the census
                entries = default_corpus()
            elif Path(config.corpus).is_file() or (ROOT / config.corpus).is_file():
                corpus = config.corpus if Path(config.corpus).is_file() else ROOT / config.corpus
                entries = read_corpus(corpus, title_case=config.title_case)
            else:
                entries = None
            if entries is not None:
                vocab = Vocab.from_names(e.name for e in entries)
                net = CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=config.hidden_size,
                                          num_layers=config.num_layers, cell=config.cell))
                assert sum(p.numel() for p in net.parameters()) == int(params.replace(",", "")), name
        for pattern, (field_name, parse) in TRAINING_FACTS.items():
            for value in re.findall(pattern, training):
                assert getattr(config, field_name) == parse(value), f"{name}: {field_name} {value!r}"
                stated.add(field_name)
        base = re.search(r"as `([\w-]+)`", training)
        if base:
            other = load_preset(base.group(1)).config
            differ = {f for f in FIELD_NAMES if getattr(config, f) != getattr(other, f)}
            assert differ <= stated, f"{name} differs from {base.group(1)} in {sorted(differ - stated)}, unsaid"
        if model == "the same GRU":
            assert base and all(getattr(config, f) == getattr(other, f) for f in model_fields), name
