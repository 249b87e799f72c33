"""Alias, kept for scripts: `python -m export.verify` is `python -m tools.verify` (make verify).

Checking that a folder's artifacts belong together reads every one of them (the ONNX files with
the runtime's readers, a layer above the exporters), so it is a tool; tests/test_layers.py lists
this module as a command alias, allowed to import its target.
"""

from tools.verify import ARTIFACTS, fingerprints, main, manifests

__all__ = ["ARTIFACTS", "fingerprints", "main", "manifests"]

if __name__ == "__main__":
    main()
