"""The torch-free core every layer builds on: the vocabulary, the artifact contract's names and
vocab.json manifest, errors, integrity checks, atomic writes, request rows and the counter-based
noise. It imports nothing of the project above it, and neither torch nor onnxruntime."""
