"""Alias, kept for scripts: `python -m serve.gpu_check` is `python -m tools.gpu_check` (make gpu-check).

The GPU check measures the serving engine, the decoder and bulk generation side by side, a
benchmark, so it lives with the tools; tests/test_layers.py lists this module as a command alias,
allowed to import its target in main() only (importing serve loads no tool).
"""

import sys


def main(argv: list[str] | None = None) -> int:
    from tools.gpu_check import main as gpu_check

    return gpu_check(argv)


if __name__ == "__main__":
    sys.exit(main())
