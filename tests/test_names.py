"""Bulk generation (model.names, `make names`): reproducible files, atomic writes, distinct names,
progress and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.request import make_rows
from model import names as bulk
from model.generate import TorchGenerator


@pytest.fixture(scope="module")
def model(tiny_artifacts) -> str:
    return str(tiny_artifacts.torchscript)


def run(model, out, *extra, num=300) -> int:
    workers = () if "--workers" in extra else ("--workers", "1")  # in this process unless asked
    return bulk.main(["--model", model, "--out", str(out), "--num", str(num), "--no-progress", *workers, *extra])


def test_the_same_seed_gives_the_same_file_whatever_the_batch_size(model, tmp_path):
    files = []
    for i, batch in enumerate(("2048", "7", "64")):
        files.append(tmp_path / f"{i}.txt")
        assert run(model, files[-1], "--seed", "7", "--batch-size", batch) == 0
    # names exactly: the contract; another batch size could only differ at a near-tie (docs/numerics.md)
    assert files[0].read_bytes() == files[1].read_bytes() == files[2].read_bytes()
    lines = files[0].read_text(encoding="utf-8").split("\n")
    assert len(lines) == 301 and lines[-1] == "" and len(set(lines)) > 50
    assert run(model, tmp_path / "other.txt", "--seed", "8") == 0
    assert (tmp_path / "other.txt").read_bytes() != files[0].read_bytes()


def test_line_i_is_the_ith_name_model_generate_gives_for_the_seed(model, tmp_path):
    out = tmp_path / "names.txt"
    assert run(model, out, "--seed", "5", "--prefix", "Ma", "--temperature", "0.8", "--top-k", "4",
               "--max-length", "9", num=40) == 0
    gen = TorchGenerator.from_torchscript(model)
    want = gen.generate_rows(make_rows(gen.vocab, "Ma", num=40, max_length=9, temperature=0.8, top_k=4, seed=5))
    got = out.read_text(encoding="utf-8").splitlines()
    assert got == want and all(n.startswith("Ma") and len(n) <= 9 for n in got)


@pytest.mark.parametrize("source", ["torchscript", "checkpoint"])
def test_the_file_is_what_the_numpy_runtime_twin_gives_for_the_seeds(tiny_or_ensemble, source, tmp_path):
    """Bulk decoding (TableStep where the cell allows, int32 noise, gathered rows, worker
    processes) against the ONNX step decoded by the numpy loop (int64 noise, every row every
    step), seed by seed, plain and with a prefix and top-k; of the tiny model and of the tiny
    ensemble (whose bulk step is its own: TableStep.of declines it), from either --model kind."""
    from model.table_step import TableStep
    from runtime.generator import NameGenerator

    model = str(getattr(tiny_or_ensemble, source))
    meta = json.loads(tiny_or_ensemble.vocab_json.read_text(encoding="utf-8"))
    assert isinstance(bulk.load_step(model, "cpu")[0], TableStep) == (meta["members"] == 1 and meta["cell"] == "rnn")
    twin = NameGenerator(tiny_or_ensemble.onnx)
    for knobs, extra in (({}, ()), ({"prefix": "Jo", "temperature": 1.3, "top_k": 5},
                                    ("--prefix", "Jo", "--temperature", "1.3", "--top-k", "5"))):
        out = tmp_path / "names.txt"
        assert run(model, out, "--seed", "11", "--batch-size", "50", "--workers", "2", *extra, num=500) == 0
        rows = make_rows(twin.vocab, knobs.get("prefix", ""), num=500, temperature=knobs.get("temperature", 1.0),
                         top_k=knobs.get("top_k", 0), seed=11)
        assert out.read_text(encoding="utf-8").splitlines() == twin.generate_rows(rows)


def test_a_failed_run_leaves_the_previous_file(model, tmp_path, monkeypatch):
    out = tmp_path / "names.txt"
    out.write_text("the previous good file\n", encoding="utf-8")
    calls = []
    real_run = bulk.ChunkedDecoder.run

    def failing(self, batch, **kw):
        calls.append(len(batch))
        if len(calls) == 3:
            raise RuntimeError("device lost")
        return real_run(self, batch, **kw)

    monkeypatch.setattr(bulk.ChunkedDecoder, "run", failing)
    with pytest.raises(RuntimeError, match="device lost"):
        run(model, out, "--batch-size", "16", num=100)
    assert out.read_text(encoding="utf-8") == "the previous good file\n"
    assert [p.name for p in tmp_path.iterdir()] == ["names.txt"]  # no temporary file left behind


def test_distinct_keeps_first_occurrences_in_row_order(model, tmp_path):
    plain, distinct, other = tmp_path / "plain.txt", tmp_path / "distinct.txt", tmp_path / "distinct-7.txt"
    assert run(model, plain, "--seed", "3", "--temperature", "0.6", num=400) == 0
    assert run(model, distinct, "--seed", "3", "--temperature", "0.6", "--distinct", num=60) == 0
    assert run(model, other, "--seed", "3", "--temperature", "0.6", "--distinct", "--batch-size", "7", num=60) == 0
    names = distinct.read_text(encoding="utf-8").splitlines()
    first_seen = list(dict.fromkeys(plain.read_text(encoding="utf-8").splitlines()))
    assert len(plain.read_text(encoding="utf-8").splitlines()) > len(first_seen) >= 60  # the model repeats itself
    assert names == first_seen[:60]
    assert other.read_bytes() == distinct.read_bytes()


def test_distinct_gives_up_with_the_numbers_when_the_model_cannot(model, tmp_path, capsys):
    out = tmp_path / "names.txt"
    out.write_text("old\n", encoding="utf-8")
    # names of at most 3 characters starting "Ma": at most a vocabulary's worth of them
    code = run(model, out, "--prefix", "Ma", "--max-length", "3", "--distinct", "--max-draws", "5000", num=1000)
    err = capsys.readouterr().err
    assert code == 2 and "distinct names in" in err and "--max-draws 5000" in err and "cannot give 1000" in err
    assert out.read_text(encoding="utf-8") == "old\n"


def test_progress_counts_every_name_and_the_cli_reports_its_rate(model, tmp_path):
    gen = TorchGenerator.from_torchscript(model)
    spec = bulk.BulkSpec(130, seed=1)
    decoder = bulk.bulk_decoder(gen.step, gen.vocab, gen.hidden_shape, spec, "cpu", 32)
    ticks = []
    bulk.write_names(tmp_path / "a.txt", decoder, gen.vocab, spec, batch_size=32, progress=ticks.append)
    assert ticks == [32, 32, 32, 32, 2]
    done = subprocess.run([sys.executable, "-m", "model.names", "--model", model, "--out", str(tmp_path / "b.txt"),
                           "--num", "500", "--batch-size", "100"], capture_output=True, text=True, check=True)
    assert "names/s" in done.stderr and "500/500" in done.stderr  # the bar, with its rate
    assert "wrote 500 names to" in done.stderr
    assert (tmp_path / "b.txt").read_text(encoding="utf-8").count("\n") == 500


@pytest.mark.parametrize("args,message", [
    (["--temperature", "0"], "greedy) gives every row the same name"),
    (["--temperature", "nan"], "--temperature must be a finite number"),
    (["--prefix", "A#"], "'#' (U+0023)"),
    (["--seed", "-1"], "--seed must be in"),
    (["--top-k", "-2"], "--top-k must be >= 0"),
    (["--max-length", "1", "--prefix", "Ma"], "--max-length 1 is shorter than the prefix"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--model", "missing.torchscript.pt"], "no such file"),
    (["--device", "cuda:7"], "CUDA is not available"),
])
def test_bad_input_is_refused_naming_it(model, tmp_path, capsys, args, message):
    if "--device" in args and __import__("torch").cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "names.txt"
    assert bulk.main(["--model", model, "--out", str(out), "--num", "5", "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")
    assert not out.exists()


def test_num_must_be_positive(model, tmp_path, capsys):
    assert run(model, tmp_path / "x.txt", num=0) == 2
    assert "--num must be >= 1" in capsys.readouterr().err


def test_worker_processes_write_the_same_file(model, tmp_path):
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    assert run(model, one, "--seed", "9", "--batch-size", "50", num=420) == 0
    assert run(model, two, "--seed", "9", "--batch-size", "50", "--workers", "2", num=420) == 0
    assert one.read_bytes() == two.read_bytes()
    d1, d2 = tmp_path / "d1.txt", tmp_path / "d2.txt"
    assert run(model, d1, "--seed", "9", "--batch-size", "50", "--distinct", "--temperature", "0.6", num=80) == 0
    assert run(model, d2, "--seed", "9", "--batch-size", "50", "--distinct", "--temperature", "0.6", "--workers", "2",
               num=80) == 0
    assert d1.read_bytes() == d2.read_bytes()


def test_the_bench_section_measures_both_paths_on_the_same_names(tiny_artifacts):
    from bench import bulk as bench_bulk

    r = bench_bulk.measure(str(tiny_artifacts.dir), num=300, repeats=1, batch=64, loop_num=100, workers=2)
    assert r["same_names"] is True
    assert set(r["names_per_s"]) == {"bulk_1", "bulk_2", "loop"}
    assert all(s["median"] > 0 for s in r["names_per_s"].values())
    md = bench_bulk.markdown(r)
    assert "bulk, 2 processes" in md and "per-row API" in md and "target >= 100,000" in md
    assert "% of the limit" in md and "FLOPs and >= " in md and "bytes per row and step" in md
