"""The ONNX Runtime embedding runtime: the readers of charrnn.onnx and charrnn_generate.onnx,
torch-free (numpy and onnxruntime). An application ships the .onnx file, these modules and the
torch-free modules they import (tests/test_layers.py holds this list to the imports):

    runtime/  core/  model/__init__.py  model/decode_numpy.py  model/nbest.py

    from runtime.generator import NameGenerator
    NameGenerator("artifacts/charrnn.onnx").generate("L", num=3)

- runtime.session: session options and the checked loading of one of our ONNX files
- runtime.step: OnnxStep, charrnn.onnx as a step callable
- runtime.greedy: OnnxGreedy, charrnn_generate.onnx (the whole greedy loop in one session.run)
- runtime.generator: NameGenerator over them, with the numpy loop (model.decode_numpy) and the
  n-best search (model.nbest)

The command line is `python -m tools.generate --backend onnx` (`python -m export.runtime` is
its alias, kept for scripts).
"""
