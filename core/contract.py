"""The artifact contract's names, in one place (torch-free): the files an export writes, the
ONNX graphs' input and output names, and where `make serve` leaves TorchServe's tokens.

Public: extend, never rename. Users' scripts, the Makefile, web/charrnn.mjs and
export/node/generate.mjs spell the same names; tests/test_contract.py checks that they agree.
"""

from __future__ import annotations

ART_DIR = "artifacts"  # where make writes everything

CORPUS = "corpus.txt"  # the default training corpus (make data)
# beside a corpus that make data built: which file of the project (under data/) it was built from,
# so the model card can quote that file's provenance, licence and limits (its README.md)
CORPUS_SOURCE_SUFFIX = ".source"
CHECKPOINT = "checkpoint.pt"  # make train
VOCAB = "vocab.json"  # beside the exports, and its name inside each (TorchScript extra file, ONNX metadata key)
TORCHSCRIPT = "charrnn.torchscript.pt"  # the TorchScript step
TORCHSCRIPT_SUFFIX = TORCHSCRIPT[TORCHSCRIPT.index("."):]  # ".torchscript.pt": any TorchScript export (model.names --model)
ONNX_STEP = "charrnn.onnx"  # the ONNX step
ONNX_GENERATE = "charrnn_generate.onnx"  # the one-graph greedy decoder (in artifacts/ and in charrnn.mar)
EXPORTS = (VOCAB, TORCHSCRIPT, ONNX_STEP, ONNX_GENERATE)  # what make export writes, in this order
MODEL_CARD = "model_card.md"  # the model card (make card, make eval), shipped in the archives and on the web page

MODEL_STORE = "model_store"  # the archives' folder under ART_DIR
MODEL = "charrnn"  # the one-shot model's name in TorchServe's URLs
SESSION_MODEL = "charrnn_session"  # the session model's
MODELS = (MODEL, SESSION_MODEL)
SERVE_DIR = "serve"  # make serve's run folder under ART_DIR
KEY_FILE = "key_file.json"  # the tokens TorchServe writes into its run folder
# the HTTP header that carries a session's id, both ways (its name from TorchServe's sequence
# batching, which the session model used before; kept so that clients need no change)
SESSION_HEADER = "ts_request_sequence_id"


ARCHIVE_SUFFIX = ".mar"


def archive(model: str) -> str:
    """A model's TorchServe archive file name: charrnn.mar, charrnn_session.mar."""
    return model + ARCHIVE_SUFFIX


ARCHIVES = tuple(archive(m) for m in MODELS)

# The ONNX step: char int64 [batch], hidden float32 [layers, batch, hidden] -> logits, hidden_out
STEP_INPUTS = ("char", "hidden")
STEP_OUTPUTS = ("logits", "hidden_out")
# The one-graph greedy decoder (export.generate_graph documents the shapes)
GENERATE_INPUTS = ("prefix", "prefix_length", "max_length")
GENERATE_OUTPUTS = ("ids", "length", "logprob")


def default_path(name: str) -> str:
    """`name`'s path in the default artifacts folder, as the command lines' defaults spell it."""
    return f"{ART_DIR}/{name}"


DEFAULT_KEY_FILE = default_path(f"{SERVE_DIR}/{KEY_FILE}")  # make serve's tokens, read by the clients
