"""make gpu-check's CPU-runnable parts: its figures, its physical-limit arithmetic, its comparison
of GPU names with the CPU's (tools.gpu_parity), a dry run of every section with the CPU standing
in for the GPU (the capture itself needs CUDA), on a Python that sees PyTorch alone, and the
one-command GPU run (tools/gpu_run.sh)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from core.request import Row, make_rows
from model.charrnn import CharRNN, ModelConfig
from model.decode import decode
from tests.torch_only import torch_only_python
from tools import gpu_check, limits
from tools.gpu_parity import Parity
from tools.result_page import MARKER
from tools.tables import table


def test_model_cost_counts_every_multiply_add_but_the_input_lookup():
    for cell, layers, per_layer in (("rnn", 1, 1), ("gru", 2, 3)):
        model = CharRNN(ModelConfig(vocab_size=30, hidden_size=16, num_layers=layers, cell=cell))
        cost = limits.model_cost(model, (layers, 16), 30, sampled=False)
        macs = layers * per_layer * 16 * 16 + (layers - 1) * per_layer * 16 * 16 + 16 * 30
        assert cost["flops"] == 2 * macs
        assert limits.model_cost(model, (layers, 16), 30, sampled=True)["bytes"] > cost["bytes"]


def test_limit_lines_name_the_binding_resource_and_the_share_of_it():
    cost = {"greedy": {"flops": 10, "bytes": 100}, "sampled": {"flops": 10, "bytes": 1000}}
    peaks = {"flops": 4800.0, "bytes": 24000.0}  # 24 steps: 20 names/s by FLOPs, 10 by bytes
    greedy, sampled = limits.limit_lines({"g": (5.0, False, 24), "s": (0.5, True, 24)}, cost, peaks)
    assert "50.00% of the limit 10 (bytes-bound, 24.0 steps a name)" in greedy
    assert "50.00% of the limit 1 (bytes-bound" in sampled
    peaks["bytes"] = 1e9
    assert "25.00% of the limit 20 (FLOPs-bound" in limits.limit_lines({"g": (5.0, False, 24)}, cost, peaks)[0]
    assert "12.50% of the limit 40 (FLOPs-bound, 12.0" in limits.limit_lines({"g": (5.0, False, 12)}, cost, peaks)[0]


def test_mean_steps_counts_characters_and_the_end_token_or_the_cap():
    ids = torch.tensor([[5, 6, 0, 0], [5, 0, 0, 0], [5, 6, 7, 8]])  # 3, 2 and 4 (capped) steps
    assert limits.mean_steps(ids, eos_id=0) == 3.0


def test_figure_table_aligns_and_formats_the_figures():
    text = gpu_check.figure_table(["rows", "GPU greedy"], [[1, 1234.4], [65536, 12345678.9]])
    lines = text.splitlines()
    assert lines[1].endswith("     1,234") and lines[2].endswith("12,345,679")
    assert len({len(line) for line in lines}) == 1


def test_the_plain_table_pads_each_column_to_its_widest_cell_as_aligned():
    """gpu-check prints through the one table writer (tools.tables), its plain-text form."""
    assert table(["a", "bb", "c"], [["xyz", 1, 22]], "lrc", plain=True).splitlines() == [
        "  a    bb  c", "  xyz   1  22"]
    with pytest.raises(ValueError, match="align"):
        table(["a"], [], "x", plain=True)


ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available: run `make gpu-check` instead")


@NO_CUDA
def test_a_dry_run_checks_every_route_and_writes_its_page(capsys, tiny_artifacts, tmp_path):
    page = tmp_path / "results" / "gpu-check.md"
    code = gpu_check.main(["--model", str(tiny_artifacts.torchscript), "--vocab", str(tiny_artifacts.vocab_json),
                           "--dry-run-on-cpu", "--seconds", "0.02", "--decoder-rows", "1,8",
                           "--engine-requests", "1,3", "--bulk", "300", "--page", str(page)])
    out = capsys.readouterr().out
    assert code == 0, out
    routes = ["engine greedy, 64 requests", "engine sampled (T=1), 64 requests", "engine top-k, 64 requests",
              "engine mixed, 300 requests", "engine streamed", "engine n-best", "engine sessions",
              "handler on cpu, 64 requests", "handler streamed request", "decoder greedy (1-letter prefixes), 8 rows",
              "decoder sampled (T=1), 8 rows", "decoder top-k (T=0.8, k=5), 8 rows",
              "bulk to a file (make names' table step), first 300 lines"]
    for route in routes:
        assert f"{route}" in out and "GPU names == CPU names" in out.split(route, 1)[1].splitlines()[0], route
    for expected in ("decoder names/s", "replays/flag reads", "engine names/s", "physical limit: per row and step",
                     "decoder greedy @8", "targets (issue 14", "GPU ahead of this machine's CPU", "gpu-check passed"):
        assert expected in out, expected
    text = page.read_text(encoding="utf-8")
    assert text.startswith(MARKER) and "DRY RUN" in text.splitlines()[1]
    assert "Command: `python -m tools.gpu_check --model" in text and "**gpu-check passed**" in text
    for heading in ("Targets", "GPU names against the CPU's", "The decoder alone (model.chunked), names/s",
                    "The engine (what the handler runs), names/s", "Bulk generation to a file",
                    "Against the physical limit"):
        assert f"\n## {heading}\n" in text, heading
    assert "| engine greedy @1 | >= 3,000 names/s |" in text
    assert all(f"| {route}" in text for route in routes[:4])


@NO_CUDA
def test_without_cuda_it_skips_and_writes_no_page(capsys, tiny_artifacts, tmp_path):
    assert gpu_check.main(["--model", str(tiny_artifacts.torchscript), "--page", str(tmp_path / "p.md")]) == 0
    assert "gpu-check: SKIPPED" in capsys.readouterr().out and not (tmp_path / "p.md").exists()


@NO_CUDA
def test_make_gpu_check_runs_with_torch_alone_and_without_the_venv(tmp_path):
    """On a GPU machine with its own Python, PyTorch alone (no numpy: torch's wheel does not
    require it) and no network, `make gpu-check` must not try to build the venv: without it,
    make runs $(PYTHON_BOOT) as it is. Here a venv path that does not exist stands for the bare
    machine and a Python that sees only torch (tests/torch_only.py) for its Python; with no export
    in ART the check scripts a random-weight model of the default size, and runs every section on
    it (GPU_CHECK_ARGS: the CPU standing in for the GPU, small sizes), writing its page."""
    python = torch_only_python(tmp_path / "bare", ROOT)
    hidden = subprocess.run([str(python), "-c", "import numpy"], capture_output=True, text=True, check=False)
    assert hidden.returncode != 0 and "hidden: PyTorch alone" in hidden.stderr
    small = "--dry-run-on-cpu --seconds 0.01 --decoder-rows 1,4 --engine-requests 1 --bulk 50"
    done = subprocess.run(["make", "gpu-check", f"VENV={tmp_path / 'no-venv'}", f"PYTHON_BOOT={python}",
                           f"ART={tmp_path / 'no-artifacts'}", f"RESULTS_DIR={tmp_path / 'results'}",
                           f"GPU_CHECK_ARGS={small}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=900, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "-m venv" not in out and "pip install" not in out, out[-2000:]
    assert f"{python} -m tools.gpu_check --model {tmp_path / 'no-artifacts'}" in out
    assert "not found: a randomly initialised CharRNN of the default size" in out, out[-2000:]
    assert "Failed to initialize NumPy" in out  # torch itself saw no numpy
    assert "engine n-best, 8 searches: 100 names, GPU names == CPU names" in out and "gpu-check passed" in out
    assert (tmp_path / "results" / "gpu-check.md").is_file()
    assert not (tmp_path / "no-venv").exists()


def run_script(tmp_path: Path, art: Path, **env) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    python = torch_only_python(tmp_path / "bare", ROOT)
    environment = {**os.environ, "OUT": str(out), "PYTHON": str(python), "ART": str(art), **env}
    done = subprocess.run(["bash", str(ROOT / "tools" / "gpu_run.sh")], capture_output=True, text=True,
                          env=environment, timeout=900, check=False)
    return done, out


@NO_CUDA
def test_the_gpu_run_script_runs_each_step_with_torch_alone(tmp_path, tiny_artifacts):
    """tools/gpu_run.sh, the GPU run in one device call, on a Python that sees PyTorch alone,
    with the export carried in ART and the CPU standing in (GPU_RUN_DRY): make gpu-check writes
    its log and page, then make names its file, summed up under OUT."""
    art = tmp_path / "art"
    art.mkdir()
    for f in (tiny_artifacts.torchscript, tiny_artifacts.vocab_json):
        shutil.copy2(f, art / f.name)
    done, out = run_script(tmp_path, art, GPU_RUN_DRY="1")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "CUDA available False" in (out / "machine.txt").read_text()
    log = (out / "gpu-check.log").read_text()
    assert "make gpu-check" in log and f"--model {art}/charrnn.torchscript.pt" in log and "gpu-check passed" in log
    assert (out / "results" / "gpu-check.md").read_text().startswith(MARKER)
    names = (out / "names.log").read_text()
    assert "make names" in names and "wrote 2000 names" in names and "== names: exit status 0" in names
    summary = (out / "names-summary.txt").read_text().splitlines()
    assert summary[0] == "lines: 2000" and summary[1].startswith("sha256: ") and len(summary) == 23


@NO_CUDA
def test_the_gpu_run_script_skips_cleanly_without_cuda(tmp_path):
    done, out = run_script(tmp_path, tmp_path / "no-artifacts")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "gpu-check: SKIPPED" in (out / "gpu-check.log").read_text()
    assert "skipped: CUDA is not available" in (out / "names.log").read_text()
    assert not (out / "results" / "gpu-check.md").exists()


def test_the_old_command_name_runs_the_check(tiny_artifacts, capsys):
    """`python -m serve.gpu_check` was documented (people have it in scripts): an alias of
    tools.gpu_check."""
    from serve import gpu_check as alias

    if torch.cuda.is_available():
        pytest.skip("CUDA is available: run `make gpu-check` instead")
    assert alias.main(["--model", str(tiny_artifacts.torchscript), "--vocab", str(tiny_artifacts.vocab_json)]) == 0
    assert "gpu-check: SKIPPED" in capsys.readouterr().out


# ---------------------------------------------------------------- tools.gpu_parity


def test_the_recomputed_scores_reproduce_every_choice_of_the_decoder(loaded):
    """What a difference is diagnosed from: at every position of greedy, sampled and top-k rows
    (prefixes included), the argmax of the recomputed decision scores is the symbol decoded."""
    model, vocab = loaded
    rows = (make_rows(vocab, "", num=2, temperature=1.0, seed=3) + make_rows(vocab, "M", num=2, temperature=0.6, seed=8)
            + make_rows(vocab, "", num=2, temperature=1.3, top_k=3, seed=5) + make_rows(vocab, "J"))
    step = (model.step, "cpu")
    parity = Parity(vocab, (model.num_layers, model.hidden_size), {"GPU": step, "CPU": step})
    decoded = decode(model.step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                     hidden_shape=(model.num_layers, model.hidden_size))
    checked = 0
    for row, ids in zip(rows, decoded):
        full = ids + ([vocab.eos_id] if len(ids) < row.max_length else [])
        for p in range(len(row.prefix), len(full)):
            assert int(parity.decision_scores(model.step, "cpu", row, ids[:p], p).argmax()) == full[p], (row, p)
            checked += 1
    assert checked > 20


def tied_steps(model, vocab, first: str, second: str, gpu_lead: float, cpu_lead: float):
    """Two steps of one model ("GPU", "CPU") whose first-position logits differ only in that
    `second` leads `first`'s logit by gpu_lead on one and by cpu_lead on the other."""
    a, b = vocab.encode(first + second)

    def step(lead):
        def run(char, hidden):
            logits, hidden = model.step(char, hidden)
            at_start = (char == vocab.bos_id).unsqueeze(1) & (torch.arange(logits.shape[1]) == b)
            return torch.where(at_start, logits[:, a:a + 1] + lead, logits), hidden
        return run

    return {"GPU": (step(gpu_lead), "cpu"), "CPU": (step(cpu_lead), "cpu")}


@pytest.mark.parametrize("gpu_lead,near_tie", [(4e-6, True), (0.5, False)])
def test_a_difference_at_a_near_tie_is_told_from_a_bug(loaded, gpu_lead, near_tie):
    """Greedy names that part at the first letter: where the two devices' gaps are a float32
    rounding apart it is a near-tie (the route still passes); where one device's gap is large it
    is a bug (the route fails). Either way the row, position, symbols and gaps are shown."""
    model, vocab = loaded
    hidden = (model.num_layers, model.hidden_size)
    rows = [Row((), 12), *make_rows(vocab, "A", num=1)]
    first = vocab.decode(decode(model.step, rows[:1], bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=hidden)[0])[0]
    second = "J" if first != "J" else "M"
    steps = tied_steps(model, vocab, first, second, gpu_lead, -3e-6)
    got = {d: [vocab.decode(i) for i in decode(s, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=hidden)]
           for d, (s, _) in steps.items()}
    assert got["GPU"][0].startswith(second) and got["CPU"][0].startswith(first) and got["GPU"][1] == got["CPU"][1]
    verdict = Parity(vocab, hidden, steps).compare("engine greedy", got, rows, labels=["request 0, name 0", "x"])
    (diff,) = verdict.differences
    assert (diff.row, diff.position, diff.chosen) == (0, 0, {"GPU": second, "CPU": first})
    assert [s for s, _ in diff.top2["GPU"]] == [second, first] and [s for s, _ in diff.top2["CPU"]] == [first, second]
    assert math.isclose(diff.gap["GPU"], gpu_lead, rel_tol=1e-3, abs_tol=1e-6)
    assert math.isclose(diff.gap["CPU"], 3e-6, rel_tol=0.1, abs_tol=1e-6)
    assert diff.near_tie is near_tie and verdict.ok is near_tie
    line = diff.line()
    assert f"row 0 (request 0, name 0), position 0: GPU {second!r} / CPU {first!r}" in line
    assert ("a near-tie" in line and "NOT" not in line) if near_tie else "NOT a near-tie: a bug" in line
    assert ("1 of them differ (1 near-ties)" if near_tie else "1 of them differ (0 near-ties)") in verdict.summary()


def test_log_probabilities_of_the_same_names_must_agree(loaded):
    model, vocab = loaded
    step = (model.step, "cpu")
    parity = Parity(vocab, (model.num_layers, model.hidden_size), {"GPU": step, "CPU": step})
    rows = make_rows(vocab, "Ma", num=2, temperature=1.0, seed=1)
    names = {"GPU": ["Maria", "Mateus"], "CPU": ["Maria", "Mateus"]}
    close = parity.compare("r", names, rows, logprobs={"GPU": [-3.0, -5.0], "CPU": [-3.00001, -5.0]})
    assert close.ok and close.logprobs == 2 and close.logprob_mismatches == 0
    far = parity.compare("r", names, rows, logprobs={"GPU": [-3.0, -5.0], "CPU": [-3.01, -5.0]})
    assert not far.ok and far.logprob_mismatches == 1 and "1/2 agree" in far.summary()
