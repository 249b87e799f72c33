"""`make bench` harness: summaries, presets, the notebook baseline, time to quality, the sweep,
section selection. Tiny corpora and sub-second budgets: these check the code, not the figures."""

import json
import math
from pathlib import Path

import onnx
import pytest
import torch

from bench import quality, sweep, training
from bench.__main__ import main as bench_main
from bench.common import fmt, summary
from core.vocab import Vocab
from data.corpus import Entry, split
from model.charrnn import CharRNN, ModelConfig
from model.train import batch_loss, encode_names
from tests.conftest import NAMES, assert_close, tiny_config
from tools.result_page import MARKER

ROOT = Path(__file__).resolve().parent.parent


def test_summary_is_median_min_max():
    s = summary([3.0, 1.0, 10.0, 2.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.5, 1.0, 10.0, 4)
    assert fmt(summary([1000.0, 2000.0, 1500.0])) == "1,500 (1,000–2,000, n=3)"
    with pytest.raises(ValueError):
        summary([])


def test_notebook_loop_computes_the_training_loss_of_one_name():
    vocab = Vocab.from_names(NAMES)
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(len(vocab), 16))
    inputs, target = training.notebook_tensors("Maitê", vocab)
    assert inputs.shape == (6, 1, 1, len(vocab)) and target.view(-1).tolist()[-1] == vocab.eos_id
    expected, n = batch_loss(model, encode_names(["Maitê"], vocab), torch.tensor([0]), torch.device("cpu"))
    assert n == 6
    # a loop of one-character steps against nn.RNN over the whole name: the parity rule
    assert_close(training.notebook_name_loss(model, inputs, target).detach(), expected.detach(), "loss")


def test_training_throughput_measures_both_loops():
    entries = [Entry(n) for n in NAMES]
    result = training.measure(entries, tiny_config(hidden_size=16), batch_sizes=(4, 8), seconds=0.3, repeats=2)
    assert result["notebook"]["n"] == 2 and result["notebook"]["median"] > 0
    for b in ("4", "8"):
        ratios = [bt / nb for bt, nb in zip(result["batched"][b]["values"], result["notebook"]["values"],
                                            strict=True)]
        assert result["speedup"][b]["values"] == pytest.approx(ratios)
    md = training.markdown(result, "names.txt")
    assert "batch 8" in md and "notebook baseline" in md and "Target ≥ 50×" in md


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_snapshots_take_the_first_step_past_each_milestone_and_the_last_step_near_the_end():
    snaps, model = quality.Snapshots([1.0, 2.0]), _Model()
    for step, seconds in enumerate([0.4, 0.8, 1.2, 1.6, 1.95], 1):
        with torch.no_grad():
            model.w.fill_(step)
        snaps({"seconds": seconds, "targets": 10}, model)
    assert snaps.states[1.0][0] == 1.2 and float(snaps.states[1.0][1]["w"]) == 3
    # the run may stop after 1.95 s (its clock passed 2 s just after): the last step stands for 2 s
    assert snaps.states[2.0][0] == 1.95 and float(snaps.states[2.0][1]["w"]) == 5
    assert snaps.steps == 5 and snaps.targets == 50


def test_time_to_quality_scores_snapshots_against_the_bigram():
    entries = [Entry(n) for n in NAMES]
    # a gentle lr: 0.6 s is hundreds of steps on 31 names, and validation NLL climbs once it overfits
    result = quality.time_to_quality(entries, tiny_config(hidden_size=16, lr=0.002), [0.3, 0.6])
    for m in ("0.3", "0.6"):
        assert 0 < result["milestones"][m]["val_nll"] < math.log(60)
        assert result["milestones"][m]["seconds"] >= float(m) - 0.2
    assert result["steps"] > 0 and result["targets_per_s"] > 0
    bigram = quality.bigram_baseline(entries, 0.15)
    assert 0 < bigram["val_nll"] < math.log(60) and bigram["alpha"] > 0
    assert len(split(entries, 0.15)[1]) > 0


def test_sweep_runs_configurations_and_marks_the_best(tmp_path):
    corpus = tmp_path / "names.txt"
    corpus.write_text("".join(f"{n}\n" for n in NAMES))
    configs = {"a": dict(sweep.GRU_BASE, hidden_size=8), "b": dict(sweep.GRU_BASE, hidden_size=12, lr=0.03)}
    from unittest import mock

    with mock.patch.dict(sweep.CONFIGS, configs, clear=True):
        sweep.main(["--corpus", str(corpus), "--no-title-case", "--val-fraction", "0.15", "--milestones", "0.2,0.4",
                    "--threads", "1", "--out-dir", str(tmp_path / "out"), "--page", str(tmp_path / "sweep.md")])
        with pytest.raises(SystemExit, match="unknown configuration"):
            sweep.main(["--only", "nope"])
    result = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [r["name"] for r in result["rows"]] == ["a", "b"]
    md = (tmp_path / "out" / "sweep.md").read_text()
    assert "val NLL @ 0.4 s" in md and md.count("**") == 2 and "Bigram baseline" in md
    page = (tmp_path / "sweep.md").read_text()
    assert page.startswith(MARKER) and sweep.markdown_body(result) in page and f"`{result['command']}`" in page
    (tmp_path / "sweep.md").unlink()
    sweep.main(["--render", str(tmp_path / "out" / "sweep.json"), "--page", str(tmp_path / "sweep.md")])
    assert (tmp_path / "sweep.md").read_text() == page  # the same page again from the run's sweep.json


def test_the_sweep_bases_are_read_from_the_presets(tmp_path):
    """rnn-base trains what presets/ibge-rnn.toml sets, gru-base what presets/ibge-single.toml sets but for
    the two knobs the sweep and `make eval` chose; read by model.config's loader, never respelled."""
    import shutil

    from model.config import PRESET_DIR, load_preset

    rnn, gru = load_preset("ibge-rnn").config, load_preset("ibge-single").config
    assert sweep.CONFIGS["rnn-base"] == {k: getattr(rnn, k) for k in sweep.SWEPT}
    assert {k for k in sweep.SWEPT if sweep.CONFIGS["gru-base"][k] != getattr(gru, k)} == {"hidden_size", "count_weighting"}
    presets = tmp_path / "presets"
    shutil.copytree(PRESET_DIR, presets)
    ibge = presets / "ibge-single.toml"
    ibge.write_text(ibge.read_text(encoding="utf-8") + "batch_size = 48\n", encoding="utf-8")
    assert sweep.preset_knobs("ibge-rnn", presets)["batch_size"] == 48  # through its include


def test_sections_run_alone_and_keep_the_others(tmp_path):
    corpus = tmp_path / "names.txt"
    corpus.write_text("".join(f"{n}\n" for n in NAMES))
    (tmp_path / "tiny.toml").write_text(f'include = "ibge-single"\ncorpus = "{corpus}"\nhidden_size = 8\ntitle_case = false\n')
    (tmp_path / "ibge-single.toml").write_text((ROOT / "presets" / "ibge-single.toml").read_text())
    out, pages = tmp_path / "bench", tmp_path / "results"
    common = ["--out-dir", str(out), "--threads", "1", "--repeats", "1", "--results-dir", str(pages)]
    assert bench_main(["--sections", "training", *common, "--train-corpus", str(corpus), "--train-seconds", "0.2",
                       "--train-batches", "8", "--train-hidden", "8"]) == 0
    assert bench_main(["--sections", "quality,serving", *common, "--presets", "tiny", "--preset-dir",
                       str(tmp_path), "--milestones", "0.2,0.4", "--quality-repeats", "2",
                       "--serving-model-store", str(tmp_path / "no-archives")]) == 0
    sections = json.loads((out / "bench.json").read_text())["sections"]
    assert sections["training"]["status"] == "ok" and sections["quality"]["status"] == "ok"
    assert sections["serving"]["status"] == "skipped"  # no archives (or no Java): said, not failed
    assert "make archive" in sections["serving"]["error"] or "Java" in sections["serving"]["error"]
    assert sections["quality"]["data"]["parts"]["presets"]["data"]["presets"]["tiny"]["val_nll"]["0.4"]["n"] == 2
    md = (out / "bench.md").read_text()
    assert md.index("## Training throughput") < md.index("## Time to quality") < md.index("## Serving")
    assert "`PRESET=tiny`" in md and "**skipped**" in md and "Measured " in md
    # one stamped result page per section that ran to the end; a skipped section writes none
    assert sorted(p.name for p in pages.glob("*.md")) == ["bench-quality.md", "bench-training.md"]
    page = (pages / "bench-quality.md").read_text()
    assert page.startswith(MARKER) and sections["quality"]["markdown"] in page
    assert f"Command: `{sections['quality']['command']}`" in page and "--presets tiny" in page
    (tmp_path / "gone.toml").write_text(f'include = "tiny"\ncorpus = "{tmp_path / "gone.txt"}"\n')
    assert bench_main(["--sections", "quality", *common, "--presets", "gone", "--preset-dir", str(tmp_path)]) == 0
    sections = json.loads((out / "bench.json").read_text())["sections"]
    assert sections["quality"]["status"] == "skipped" and "gone.txt" in sections["quality"]["error"]
    assert (pages / "bench-quality.md").read_text() == page  # the last good page stays
    with pytest.raises(SystemExit, match="unknown section"):
        bench_main(["--sections", "trainig", *common])


def test_a_preset_without_a_corpus_is_measured_on_the_corpus_make_built(tmp_path):
    """The shipped presets name no corpus: the quality section trains them on --art-dir's
    corpus.txt (`make data`), as make does, and says so when it is not there."""
    (tmp_path / "bare.toml").write_text("hidden_size = 8\nthreads = 1\n")
    art = tmp_path / "art"
    common = ["--sections", "quality", "--presets", "bare", "--preset-dir", str(tmp_path), "--art-dir", str(art),
              "--out-dir", str(tmp_path / "bench"), "--milestones", "0.2", "--quality-repeats", "1"]
    assert bench_main(common) == 0
    section = json.loads((tmp_path / "bench" / "bench.json").read_text())["sections"]["quality"]
    assert section["status"] == "skipped" and str(art / "corpus.txt") in section["error"]
    art.mkdir()
    (art / "corpus.txt").write_text("".join(f"{n}\n" for n in NAMES))
    assert bench_main(common) == 0
    section = json.loads((tmp_path / "bench" / "bench.json").read_text())["sections"]["quality"]
    presets = section["data"]["parts"]["presets"]["data"]["presets"]
    assert section["status"] == "ok" and presets["bare"]["corpus"] == str(art / "corpus.txt")


def test_the_runtime_benchmark_compares_the_four_backends(tiny_artifacts, tmp_path):
    """bench/runtime.py (`make bench-runtime`): every backend timed, ratios to eager, the names
    checked to agree, the ONNX Runtime cost probes filled in, and the result page stamped with
    the figures of runtime.json."""
    from bench import runtime
    from tools.result_page import MARKER

    page = tmp_path / "results" / "bench-runtime.md"
    runtime.main(["--art-dir", str(tiny_artifacts.dir), "--repeats", "1", "--batch", "8",
                  "--out", str(tmp_path / "bench"), "--page", str(page)])
    result = json.loads((tmp_path / "bench" / "runtime.json").read_text())
    assert result["names_agree"] is True
    for name in runtime.BACKENDS:
        r = result["backends"][name]
        assert r["p50_us"] > 0 and r["p99_us"] >= r["p50_us"] and r["names_per_s"] > 0
    assert result["backends"]["eager"]["p50_speedup"] == 1.0
    costs = result["ort_costs"]
    assert costs["floor_us"] > 0 and costs["step_us"] > 0 and costs["graph_fixed_us"] > 0
    assert costs["graph_iterations"] >= 2
    assert costs["step_nodes"] == len(onnx.load(str(tiny_artifacts.onnx)).graph.node)
    text = page.read_text(encoding="utf-8")
    assert text.startswith(MARKER) and runtime.format_table(result) in text
    assert f"Command: `python -m bench.runtime --art-dir {tiny_artifacts.dir}" in text
    graph = result["backends"]["onnx_graph"]
    assert f"| ONNX one-graph loop | {graph['p50_us']:.0f} | {graph['p99_us']:.0f} |" in text
    assert "Targets:" in text and "session.run floor" in text


def test_the_ensemble_part_trains_members_then_a_student_and_compares_them(tmp_path):
    """--quality-parts ensemble: the ensemble preset's members side by side, the student preset
    distilled from them (its own teacher replaced), the three side by side (evaluation.compare);
    the part not run keeps its last run, even one from before the parts, and says so."""
    from model.config import load_preset
    from tools.machine import machine_info

    corpus = tmp_path / "names.tsv"
    corpus.write_text("name\tcount\n" + "".join(f"{n}\t{1 + i % 5}\n" for i, n in enumerate(NAMES)))
    common = f'corpus = "{corpus}"\ntitle_case = false\nval_fraction = 0.15\nhidden_size = 8\nmax_seconds = 0.5\n'
    (tmp_path / "ens.toml").write_text(common + 'members = 2\nmember_weightings = "sqrt,none"\n')
    (tmp_path / "stu.toml").write_text(common + 'teacher = "artifacts/no-such-ensemble/checkpoint.pt"\n')
    (tmp_path / "one.toml").write_text(common)
    out, pages = tmp_path / "bench", tmp_path / "results"
    out.mkdir()
    old = {"status": "ok", "data": {"milestones": [60.0], "presets": {}}, "markdown": "OLD PRESETS TABLE",
           "machine": machine_info(), "command": "python -m bench --sections quality", "seconds": 1.0}
    (out / "bench.json").write_text(json.dumps({"sections": {"quality": old}}))
    args = ["--sections", "quality", "--preset-dir", str(tmp_path), "--out-dir", str(out), "--results-dir", str(pages)]
    assert bench_main([*args, "--quality-parts", "ensemble", "--ensemble-preset", "ens", "--student-preset", "stu",
                       "--compare-repeats", "1"]) == 0
    section = json.loads((out / "bench.json").read_text())["sections"]["quality"]
    assert section["status"] == "ok" and list(section["data"]["parts"]) == ["presets", "ensemble"]
    data = section["data"]["parts"]["ensemble"]["data"]
    assert [(m["seed"], m["count_weighting"]) for m in data["ensemble"]["members"]] == [(0, "sqrt"), (1, "none")]
    models = data["comparison"]["models"]
    assert [m["role"] for m in models] == ["teacher member", "teacher member", "teacher", "student"]
    best = min(range(2), key=lambda i: data["ensemble"]["members"][i]["best_val_loss"])
    assert models[best]["best_single"] and models[best]["name"].startswith(f"teacher's member {best} ")
    # the models compared are the ones trained in this run: their validation NLL is what training measured
    assert_close(models[2]["likelihood"]["val"]["nats_per_symbol"], data["ensemble"]["best_val_loss"], "ensemble")
    assert_close(models[3]["likelihood"]["val"]["nats_per_symbol"], data["student"]["best_val_loss"], "student")
    assert models[2]["parameters"] == 2 * models[3]["parameters"]
    page = (pages / "bench-quality.md").read_text()
    assert page.index("### Presets") < page.index("OLD PRESETS TABLE") < page.index("### The best single model")
    assert "(From an earlier run: measured " in page and "command `python -m bench --sections quality`" in page
    assert "| **teacher's member" in page and "#### Side by side: teacher and student" in page
    # the presets part alone: the ensemble part stays, now from an earlier run
    assert bench_main([*args, "--quality-parts", "presets", "--presets", "one", "--milestones", "0.2",
                       "--quality-repeats", "1"]) == 0
    page = (pages / "bench-quality.md").read_text()
    assert "OLD PRESETS TABLE" not in page and "`PRESET=one`" in page
    assert page.index("(From an earlier run") > page.index("### The best single model")
    assert "--quality-parts ensemble" in page and "| **teacher's member" in page
    with pytest.raises(SystemExit, match="--quality-parts"):
        bench_main([*args, "--quality-parts", "ensembel"])
    with pytest.raises(ValueError, match="val_fraction"):
        (tmp_path / "bad.toml").write_text(common.replace("0.15", "0.2"))
        quality.ensemble_and_student(load_preset("ens", tmp_path), load_preset("bad", tmp_path))
