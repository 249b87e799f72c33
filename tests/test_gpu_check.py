"""make gpu-check's CPU-runnable parts: its figures, its physical-limit arithmetic and a dry run
of every section with the CPU standing in for the GPU (the capture itself needs CUDA)."""

from __future__ import annotations

import pytest
import torch

from model.charrnn import CharRNN, ModelConfig
from tools import gpu_check, limits
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


def test_a_dry_run_prints_every_section(capsys, tiny_artifacts):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: run `make gpu-check` instead")
    code = gpu_check.main(["--model", str(tiny_artifacts.torchscript), "--vocab", str(tiny_artifacts.vocab_json),
                           "--dry-run-on-cpu", "--seconds", "0.02", "--decoder-rows", "1,8",
                           "--engine-requests", "1,3", "--bulk", "300"])
    out = capsys.readouterr().out
    assert code == 0, out
    for expected in ("decoder, 8 sampled rows: GPU names == CPU names", "decoder names/s", "replays/flag reads",
                     "engine names/s", "the first 300 lines are the same", "physical limit: per row and step",
                     "decoder greedy @8", "targets (issue 14", "gpu-check passed"):
        assert expected in out, expected


BLOCKED = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("onnxruntime", "onnx", "tqdm"):
            raise ImportError("not installed on this GPU machine: " + name)
sys.meta_path.insert(0, Block())
from tools import gpu_check, limits
sys.exit(gpu_check.main(sys.argv[1:]))
"""


def test_it_runs_without_onnx_runtime_or_tqdm(tiny_artifacts):
    """A GPU machine may have only PyTorch (and numpy): gpu-check must not need the CPU-side
    runtimes, down to its dry run's every section."""
    import subprocess
    import sys
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("CUDA is available: run `make gpu-check` instead")
    done = subprocess.run([sys.executable, "-c", BLOCKED, "--model", str(tiny_artifacts.torchscript), "--vocab",
                           str(tiny_artifacts.vocab_json), "--dry-run-on-cpu", "--seconds", "0.01",
                           "--decoder-rows", "1,4", "--engine-requests", "1", "--bulk", "50"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=600,
                          check=False)
    assert done.returncode == 0 and "gpu-check passed" in done.stdout, done.stderr[-2000:]


def test_make_gpu_check_runs_without_the_venv(tmp_path):
    """On a GPU machine with its own Python and torch and no network, `make gpu-check` must not
    try to build the venv: without it, make runs $(PYTHON_BOOT) as it is. Here a venv path that
    does not exist stands for the bare machine and this interpreter for its Python; with no
    export in ART the check scripts a random-weight model of the default size, and runs every
    section on it (GPU_CHECK_ARGS: the CPU standing in for the GPU where there is none, small sizes)."""
    import subprocess
    import sys
    from pathlib import Path

    small = "--dry-run-on-cpu --seconds 0.01 --decoder-rows 1,4 --engine-requests 1 --bulk 50"
    done = subprocess.run(["make", "gpu-check", f"VENV={tmp_path / 'no-venv'}", f"PYTHON_BOOT={sys.executable}",
                           f"ART={tmp_path / 'no-artifacts'}", f"GPU_CHECK_ARGS={small}"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=600,
                          check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-2000:]
    assert "-m venv" not in out and "pip install" not in out, out[-2000:]
    assert f"{sys.executable} -m tools.gpu_check --model {tmp_path / 'no-artifacts'}" in out
    assert "not found: a randomly initialised CharRNN of the default size" in out, out[-2000:]
    assert "GPU names == CPU names" in out and "gpu-check passed" in out, out[-2000:]
    assert not (tmp_path / "no-venv").exists()


def test_the_old_command_name_runs_the_check(tiny_artifacts, capsys):
    """`python -m serve.gpu_check` was documented (people have it in scripts): an alias of
    tools.gpu_check."""
    from serve import gpu_check as alias

    if torch.cuda.is_available():
        pytest.skip("CUDA is available: run `make gpu-check` instead")
    assert alias.main(["--model", str(tiny_artifacts.torchscript), "--vocab", str(tiny_artifacts.vocab_json)]) == 0
    assert "gpu-check: SKIPPED" in capsys.readouterr().out
