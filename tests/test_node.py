"""The Node.js embedding example (export/node) prints the Python runtime's greedy names."""

import shutil
import subprocess
from pathlib import Path

import pytest

from export.runtime import NameGenerator

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "export" / "node"


@pytest.fixture(scope="module")
def node():
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: the Node.js example (export/node) cannot run")
    if not (NODE_DIR / "node_modules" / ".installed").is_file():
        # the pinned onnxruntime-node, without its CUDA-downloading postinstall
        proc = subprocess.run(["make", "-s", "node-setup"], cwd=ROOT, capture_output=True, text=True,
                              timeout=600, check=False)
        assert proc.returncode == 0, f"make node-setup failed:\n{proc.stdout}\n{proc.stderr}"
    return shutil.which("node")


def run_node(node, *args):
    return subprocess.run([node, str(NODE_DIR / "generate.mjs"), *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_node_prints_the_python_runtimes_greedy_names(node, tiny_artifacts):
    gen = NameGenerator(tiny_artifacts.onnx)
    prefixes = ["", *gen.vocab.characters, "Ma", "João", "Maria Cl"]
    proc = run_node(node, "--model", str(tiny_artifacts.onnx), *prefixes)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == gen.generate(prefixes)
    short = run_node(node, "--model", str(tiny_artifacts.onnx), "--max-length", "3", "Ma", "")
    assert short.stdout.splitlines() == gen.generate(["Ma", ""], max_length=3)


def test_node_names_an_unknown_character(node, tiny_artifacts):
    proc = run_node(node, "--model", str(tiny_artifacts.onnx), "L€")
    assert proc.returncode == 1 and "not in the vocabulary" in proc.stderr
