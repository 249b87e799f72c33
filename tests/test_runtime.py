"""The torch-free ONNX Runtime path: no torch import, the vocabulary from the model alone,
batched greedy and seeded sampling, the one-graph model for greedy batches, the CLI."""

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from core import integrity, manifest
from core.errors import ArtifactError
from core.vocab import VocabError
from runtime.generator import NameGenerator
from runtime.session import session_options

ROOT = Path(__file__).resolve().parents[1]

# Runs with `import torch` made impossible: the runtime must neither import nor need it.
NO_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")

sys.meta_path.insert(0, NoTorch())
import export.generate_graph, export.runtime, runtime.generator, tools.generate
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
step, out = sys.argv[1], sys.argv[2]
export.generate_graph.main(["--step", step, "--out", out])
tools.generate.main(["--backend", "onnx", "--model", step, "--generate-model", out, "--prefix", "A", "--prefix", "",
                     "-n", "2"])
export.runtime.main(["--model", step, "--prefix", "B", "-n", "2", "--temperature", "1", "--seed", "3"])  # the alias
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
"""


def generate_path(artifacts) -> Path:
    return artifacts.dir / "charrnn_generate.onnx"


def test_runtime_and_graph_builder_work_with_torch_unimportable(tiny_or_ensemble, tmp_path):
    out = tmp_path / "gen.onnx"
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(tiny_or_ensemble.onnx), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"wrote {out}")
    gen = NameGenerator(tiny_or_ensemble.onnx)
    assert lines[1:5] == gen.generate(["A", ""], num=2)
    assert lines[5:7] == gen.generate("B", num=2, temperature=1.0, seed=3)


def test_the_onnx_file_alone_is_enough(tiny_artifacts, tmp_path):
    for name in ("charrnn.onnx", "charrnn_generate.onnx"):
        shutil.copy(tiny_artifacts.dir / name, tmp_path / name)  # no vocab.json beside them
    alone = NameGenerator(tmp_path / "charrnn.onnx", generate_model=tmp_path / "charrnn_generate.onnx")
    assert alone.vocab == NameGenerator(tiny_artifacts.onnx).vocab
    assert alone.generate("Ma", num=1) == NameGenerator(tiny_artifacts.onnx).generate("Ma", num=1)


def test_batched_prefixes_equal_one_call_per_prefix(tiny_or_ensemble):
    gen = NameGenerator(tiny_or_ensemble.onnx, generate_model=generate_path(tiny_or_ensemble))
    prefixes = ["", "A", "Ma", "João", "Z"]
    batched = gen.generate(prefixes, num=2)
    assert batched == [name for p in prefixes for name in gen.generate(p, num=2)]
    assert all(name.startswith(p) for name, p in zip(batched, [p for p in prefixes for _ in range(2)]))


def test_seeded_sampling_is_reproducible_and_ignores_the_one_graph_model(tiny_artifacts):
    step_only = NameGenerator(tiny_artifacts.onnx)
    both = NameGenerator(tiny_artifacts.onnx, generate_model=generate_path(tiny_artifacts))
    kwargs = {"num": 8, "temperature": 1.0, "seed": 11}
    names = step_only.generate(["A", "L"], **kwargs)
    assert both.generate(["A", "L"], **kwargs) == names  # sampling always takes the step loop
    assert step_only.generate(["A", "L"], **kwargs) == names
    assert step_only.generate(["A", "L"], num=8, temperature=1.0, seed=12) != names


def test_one_graph_model_of_another_export_is_refused(tiny_artifacts, tmp_path):
    proto = onnx.load(str(generate_path(tiny_artifacts)))
    _, meta = manifest.parse(proto.metadata_props[0].value, "test")
    meta["fingerprint"] = "0" * 16
    onnx.helper.set_model_props(proto, {manifest.VOCAB_KEY: manifest.dumps(meta)})
    (tmp_path / "other.onnx").write_bytes(integrity.seal_onnx(proto.SerializeToString()))  # a sound file
    with pytest.raises(ArtifactError, match="not from the same export"):
        NameGenerator(tiny_artifacts.onnx, generate_model=tmp_path / "other.onnx")


def test_step_and_one_graph_models_are_not_interchangeable(tiny_artifacts):
    with pytest.raises(ArtifactError, match="expected inputs"):
        NameGenerator(generate_path(tiny_artifacts))
    with pytest.raises(ArtifactError, match="expected inputs"):
        NameGenerator(tiny_artifacts.onnx, generate_model=tiny_artifacts.onnx)


def test_session_options_are_single_threaded_and_fully_optimised():
    import onnxruntime as ort

    opts = session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_cli_greedy_and_errors(tiny_artifacts):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "export.runtime", "--model", str(tiny_artifacts.onnx), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)

    plain = cli("--prefix", "L", "--prefix", "Ma", "-n", "2")
    one_graph = cli("--generate-model", str(generate_path(tiny_artifacts)), "--prefix", "L", "--prefix", "Ma", "-n", "2")
    assert plain.returncode == one_graph.returncode == 0, plain.stderr + one_graph.stderr
    assert plain.stdout == one_graph.stdout
    # python -m export.runtime is an alias of the one generate command line, flags and all
    tools = subprocess.run([sys.executable, "-m", "tools.generate", "--backend", "onnx", "--model",
                            str(tiny_artifacts.onnx), "--prefix", "L", "--prefix", "Ma", "-n", "2"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert tools.returncode == 0 and tools.stdout == plain.stdout, tools.stderr
    assert plain.stdout.splitlines() == NameGenerator(tiny_artifacts.onnx).generate(["L", "Ma"], num=2)
    bad = cli("--prefix", "L€")
    assert bad.returncode != 0 and "U+20AC" in bad.stderr


def test_chunked_noise_is_the_counter_based_noise_of_each_step():
    """The numpy chooser draws noise several steps at a time; each step's must still be the
    noise of (row seed, step, symbol), as the torch loop's (tests/test_decode.py)."""
    from core.noise import to_unit_interval, uniform_bits
    from core.request import Row
    from model.decode_numpy import NOISE_CHUNK, Chooser

    rows = [Row((), temperature=1.0, seed=s) for s in (0, 1, 2**32 - 1, 12345)]
    choose, vocab = Chooser(rows), 7
    choose(np.zeros((len(rows), vocab), np.float32), 0)
    seeds, symbols = np.array([r.seed for r in rows])[:, None], np.arange(vocab)[None, :]
    for step in range(2 * NOISE_CHUNK + 3):
        u = to_unit_interval(uniform_bits(seeds, step, symbols).astype(np.float32))
        assert np.array_equal(choose._noise(step), np.log(-np.log(u))), step  # the same numpy log, same u


def test_next_probabilities_and_suggest(tiny_or_ensemble):
    """The type-ahead answer (twin: web/charrnn.mjs, compared in tests/test_node.py and test_web.py)."""
    gen = NameGenerator(tiny_or_ensemble.onnx)
    for prefix in ("", "Ma", "Jú"):
        probs = gen.next_probabilities(prefix)
        assert len(probs) == len(gen.vocab.characters) + 1 and abs(sum(p for _, p in probs) - 1) < 1e-9
        assert [p for _, p in probs] == sorted((p for _, p in probs), reverse=True)
        assert (dict(probs)[""] > 0) == bool(prefix)  # a name has at least one character
        answer = gen.suggest(prefix, top=4, count=3)
        assert answer["next"] == probs[:4] and answer["greedy"] == gen.generate(prefix)[0]
        best = gen.nbest(prefix, num=3)  # the exact n-best list, with each whole name's probability
        assert [c["name"] for c in answer["completions"]] == [gen.vocab.decode(ids) for ids in best.ids]
        assert [c["logprob"] for c in answer["completions"]] == best.logprobs
        assert all(math.isclose(c["p"], math.exp(c["logprob"])) for c in answer["completions"])
    with pytest.raises(VocabError, match="U\\+20AC"):
        gen.suggest("M€")
