"""The Node.js embedding example (export/node) prints the Python runtime's greedy names."""

import shutil
import subprocess
from pathlib import Path

import pytest

from export import parity
from runtime.generator import NameGenerator

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


def test_node_prints_the_python_runtimes_greedy_names(node, tiny_or_ensemble):
    gen = NameGenerator(tiny_or_ensemble.onnx)
    prefixes = ["", *gen.vocab.characters, "Ma", "João", "Maria Cl"]
    proc = run_node(node, "--model", str(tiny_or_ensemble.onnx), *prefixes)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == gen.generate(prefixes)
    short = run_node(node, "--model", str(tiny_or_ensemble.onnx), "--max-length", "3", "Ma", "")
    assert short.stdout.splitlines() == gen.generate(["Ma", ""], max_length=3)


def test_node_names_an_unknown_character(node, tiny_artifacts):
    proc = run_node(node, "--model", str(tiny_artifacts.onnx), "L€")
    assert proc.returncode == 1 and "not in the vocabulary" in proc.stderr


def test_node_and_python_give_the_same_seeded_samples(node, tiny_or_ensemble):
    """web/charrnn.mjs (through the Node example) against runtime.generator: the same prefixes,
    temperatures, top-k and seeds give the same names (counter-based noise, float32 as numpy)."""
    gen = NameGenerator(tiny_or_ensemble.onnx)
    prefixes = ["", "Ma", "Fá", "Antô"]  # one run each case: the names of every prefix in turn
    cases = [(temperature, top_k, seed) for temperature, top_k in ((0.5, 0), (1.0, 3), (1.7, 0), (0.9, 1))
             for seed in (0, 7, 2**32 - 1)]
    for temperature, top_k, seed in cases:
        proc = run_node(node, "--model", str(tiny_or_ensemble.onnx), "--num", "6", "--temperature", str(temperature),
                        "--top-k", str(top_k), "--seed", str(seed), *prefixes)
        assert proc.returncode == 0, proc.stderr
        want = [name for prefix in prefixes
                for name in gen.generate(prefix, num=6, temperature=temperature, top_k=top_k, seed=seed)]
        assert proc.stdout.splitlines() == want, (temperature, top_k, seed)


def test_node_one_graph_greedy_and_next_probabilities(node, tiny_or_ensemble):
    graph = tiny_or_ensemble.dir / "charrnn_generate.onnx"
    gen = NameGenerator(tiny_or_ensemble.onnx, generate_model=graph)
    prefixes = ["", "Ma", "João", "Fá"]
    proc = run_node(node, "--model", str(tiny_or_ensemble.onnx), "--generate-model", str(graph), *prefixes)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == gen.generate(prefixes)
    for prefix in ("", "Jú"):
        proc = run_node(node, "--model", str(tiny_or_ensemble.onnx), "--next", prefix)
        shown = [line.split("\t") for line in proc.stdout.splitlines()]
        want = gen.next_probabilities(prefix)
        assert [c for c, _ in shown] == [c for c, _ in want]
        # onnxruntime-node and onnxruntime's kernels: the parity rule
        assert parity.close([q for _, q in want], [float(p) for _, p in shown]), prefix
        end = dict(want)[""]  # no end of name before its first character
        assert (end > 0) == bool(prefix) and parity.close(end, float(dict(shown)[""]))


@pytest.mark.parametrize("variant_artifacts", ["gru-1"], indirect=True)  # another export than tiny's
def test_node_refuses_a_one_graph_model_of_another_export(node, tiny_artifacts, variant_artifacts):
    proc = run_node(node, "--model", str(tiny_artifacts.onnx), "--generate-model",
                    str(variant_artifacts.dir / "charrnn_generate.onnx"), "Ma")
    assert proc.returncode == 1 and "not from the same export" in proc.stderr


def test_node_nbest_matches_python(node, tiny_or_ensemble):
    """The JS twin of issue 16's exact n-best search (web/charrnn.mjs `nbest`) against Python's:
    same names in the same order, same log-probabilities, same "incomplete" flag when the bound
    stops the search."""
    gen = NameGenerator(tiny_or_ensemble.onnx)
    prefixes = ["", "Ma", "Fá", "Antô"]  # one run each case: every prefix's list in turn
    for num, max_length, max_expansions in ((5, 24, 10000), (20, 24, 10000), (3, 4, 10000), (10, 24, 7)):
        proc = run_node(node, "--model", str(tiny_or_ensemble.onnx), "--search", "nbest", "--num", str(num),
                        "--max-length", str(max_length), "--max-expansions", str(max_expansions), "--logprobs",
                        *prefixes)
        assert proc.returncode == 0, proc.stderr
        rows = [line.split("\t") for line in proc.stdout.splitlines()]
        stopped = 0
        for prefix in prefixes:
            want = gen.nbest(prefix, num=num, max_length=max_length, max_expansions=max_expansions)
            got, rows = rows[:len(want.ids)], rows[len(want.ids):]
            case = (prefix, num, max_length, max_expansions)
            assert [name for name, _ in got] == [gen.vocab.decode(ids) for ids in want.ids], case
            # printed with 6 decimals, computed by onnxruntime-node: the parity rule at that rounding
            assert parity.close(want.logprobs, [float(lp) for _, lp in got], rounding=1e-6), case
            stopped += not want.complete
        assert not rows
        assert proc.stderr.count("stopped the search") == stopped


def test_node_follows_python_s_default_search(node, tiny_artifacts):
    """Several names at temperature 0 are the n-best list on every command line; one name, or
    --search greedy, is the greedy loop."""
    gen = NameGenerator(tiny_artifacts.onnx)

    def node_names(*args):
        proc = run_node(node, "--model", str(tiny_artifacts.onnx), *args, "Ma")
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    assert node_names("--num", "4") == gen.generate("Ma", num=4)
    assert node_names("--num", "4") == [gen.vocab.decode(ids) for ids in gen.nbest("Ma", num=4).ids]
    assert node_names("--num", "3", "--search", "greedy") == [gen.generate("Ma")[0]] * 3
