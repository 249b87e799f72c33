"""Alias, kept for scripts: the ONNX Runtime reader moved to runtime/ (a layer of its own, above
the exporters), its command line to tools.generate.

    from export.runtime import NameGenerator        # = runtime.generator.NameGenerator
    python -m export.runtime --model artifacts/charrnn.onnx --prefix L -n 5 [--logprobs]
                                                    # = python -m tools.generate --backend onnx ...

Project code imports runtime.* itself; tests/test_layers.py lists this module as a command
alias, allowed to import the runtime and (inside main only) the tools.
"""

from __future__ import annotations

from core.contract import GENERATE_INPUTS, GENERATE_OUTPUTS
from core.contract import ONNX_GENERATE as GENERATE_FILE
from core.contract import STEP_INPUTS as INPUTS
from core.contract import STEP_OUTPUTS as OUTPUTS
from model.decode_numpy import NOISE_CHUNK, Chooser, decode
from runtime.generator import NameGenerator
from runtime.greedy import OnnxGreedy
from runtime.session import session_options
from runtime.step import OnnxStep

__all__ = ["GENERATE_FILE", "GENERATE_INPUTS", "GENERATE_OUTPUTS", "INPUTS", "NOISE_CHUNK", "OUTPUTS", "Chooser",
           "NameGenerator", "OnnxGreedy", "OnnxStep", "decode", "main", "session_options"]


def main(argv: list[str] | None = None) -> None:
    """`python -m tools.generate --backend onnx` with the caller's flags."""
    import sys

    from tools.generate import main as generate

    generate(["--backend", "onnx", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
