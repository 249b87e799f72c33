"""TorchServe handler: a thin adapter from TorchServe's batch API to `serve.engine.Engine`.

TorchServe allows exactly one class in a handler module, so everything else lives in modules
shipped beside it in the archive (core/, model/, runtime/, serve/engine.py and its neighbours:
see serve/archive.py).

Modes (the `handler.mode` key of the archive's model-config.yaml):
- `generate`: POST {"prefix", "max_length", "num", "temperature", "top_k", "seed", "stream", "search"}
  -> {"names": [...], "logprobs": [...]} (+ "complete" for the n-best search, docs/nbest.md),
  or NDJSON lines when "stream": true. The whole TorchServe batch is
  decoded in one engine call; on CPU its greedy, non-streamed requests run in one call of the
  one-graph ONNX decoder (charrnn_generate.onnx, in the archive; `handler.one_graph: false`
  turns that off). Each answer says which decoder made it in the response header
  X-CharRNN-Decoder: onnx-graph or torch (the body is the public API and stays as it is).
- `session`: typing sessions, batched like the one-shot model (no TorchServe sequence
  batching). The session id travels in the header ts_request_sequence_id: a request without it
  opens a new session and its answer carries the new id; the engine keeps each session's text
  and caches states and answers by text (serve/sessions.py), so a request with `text` never
  depends on what this worker remembers. Each answer says in X-CharRNN-Session-Cache whether it
  came from the answer cache (hit) or was computed (miss).

Every refused request gets its own 4xx status (with an ASCII phrase: a non-ASCII one kills the
worker) and a JSON body {"error": ...}; the other requests of the batch are answered normally.

At start-up the worker refuses to serve (initialize raises, TorchServe logs it and retries)
when the archive's checksums.json does not match its files, vocab.json does not match the
vocabulary inside the TorchScript file, or the model config declares the one-graph decoder
(`handler.one_graph: true`, as serve/archive.py packs it) and charrnn_generate.onnx is missing:
never a silent fall-back to the slower TorchScript loop.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
for _root in (_HERE, os.path.dirname(_HERE)):  # the .mar's model dir, or the repository
    if os.path.isfile(os.path.join(_root, "serve", "engine.py")) and _root not in sys.path:
        sys.path.insert(0, _root)
        break

from core import contract
from core.errors import ArtifactError
from serve import checksums
from serve.engine import Engine
from serve.sessions import SessionStore
from serve.validation import Limits, RequestError
from serve.wire import NDJSON, error_json, stream_end, stream_lines

logger = logging.getLogger(__name__)

# every status phrase the handler can set: ASCII only (tests scan them)
PHRASES = {400: "Bad Request", 404: "Not Found", 413: "Payload Too Large"}
MAX_SESSION_ID = 128  # characters; TorchServe's own ids are ts-seq-<uuid> (43)
DEFAULT_SERIALIZED = contract.TORCHSCRIPT
JSON = "application/json"
DECODER_HEADER = "X-CharRNN-Decoder"  # which decoder answered a one-shot request: Engine.decoder
CACHE_HEADER = "X-CharRNN-Session-Cache"  # hit: a session answer from the answer cache, miss: computed


class CharRNNHandler:
    """initialize(context) builds the engine; handle(data, context) answers one batch."""

    def __init__(self):
        self.engine: Engine | None = None
        self.mode = "generate"
        self.initialized = False
        self._send_intermediate = None

    # ------------------------------------------------------------ start-up

    def initialize(self, context) -> None:
        props = context.system_properties
        model_dir = props.get("model_dir") or "."
        config = dict((getattr(context, "model_yaml_config", None) or {}).get("handler") or {})
        self.mode = config.get("mode", "generate")
        if self.mode not in ("generate", "session"):
            raise ValueError(f"handler.mode must be 'generate' or 'session', got {self.mode!r}")
        # one worker per core: one intra-op thread each (more only adds hand-off latency)
        torch.set_num_threads(int(config.get("threads", 1)))
        device = self._device(props.get("gpu_id"))
        manifest = getattr(context, "manifest", None) or {}
        serialized = (manifest.get("model") or {}).get("serializedFile") or DEFAULT_SERIALIZED
        started = time.perf_counter()
        label = contract.archive((manifest.get("model") or {}).get("modelName") or "model")
        checked = checksums.verify(model_dir, label)  # when the archive has checksums.json
        greedy_graph = self._greedy_graph(model_dir, config.get("one_graph"), label)
        self.engine = Engine.from_artifacts(
            os.path.join(model_dir, serialized),
            os.path.join(model_dir, contract.VOCAB),  # refuses to start on a fingerprint mismatch
            device=device,
            limits=Limits.from_dict(config.get("limits")),
            sessions=SessionStore.from_config(config.get("sessions")),
            greedy_graph=greedy_graph,
        )
        self.engine.warm_up()
        self.initialized = True
        logger.info("charrnn %s handler ready on %s%s (fingerprint %s, %d archive files checked) in %.2f s",
                    self.mode, device, ", greedy names by the one-graph ONNX decoder" if self.engine.greedy else "",
                    self.engine.fingerprint, checked, time.perf_counter() - started)

    @staticmethod
    def _device(gpu_id) -> torch.device:
        """The worker's device: TorchServe's gpu_id as the current CUDA device (on a multi-GPU host
        the CUDA graphs, their memory pool and streams are the current device's), else the CPU."""
        if torch.cuda.is_available() and gpu_id is not None and int(gpu_id) >= 0:
            device = torch.device("cuda", int(gpu_id))
            torch.cuda.set_device(device)
            return device
        return torch.device("cpu")

    def _greedy_graph(self, model_dir: str, one_graph, label: str) -> str | None:
        """charrnn_generate.onnx for greedy one-shot names on CPU (Engine.from_artifacts), or None.
        `handler.one_graph`: true (what serve/archive.py writes when it packs the file) requires
        it, false keeps every request on the TorchScript loop; absent (a stand-in context in
        tests and tools) uses it when it is there."""
        if one_graph is not None and not isinstance(one_graph, bool):
            raise ValueError(f"handler.one_graph must be true or false, got {one_graph!r}")
        path = os.path.join(model_dir, contract.ONNX_GENERATE)
        if self.mode != "generate" or one_graph is False:
            return None
        if os.path.isfile(path):
            return path
        if one_graph:
            raise ArtifactError(f"{label}: its model-config.yaml declares the one-graph decoder "
                                f"(handler.one_graph: true) but {path} is missing from the archive: "
                                "rebuild it (make archive)")
        return None

    # ------------------------------------------------------------ requests

    def handle(self, data, context):
        if self.mode == "session":
            return self._handle_sessions(data, context)
        return self._handle_generate(data, context)

    @staticmethod
    def _payload(row):
        if not isinstance(row, dict):
            return row
        value = row.get("data")
        if value is None:
            value = row.get("body")
        if value is None and row:  # e.g. curl -d without a JSON content type
            raise RequestError("the body arrived as form fields: send it as JSON with the header "
                               "'Content-Type: application/json'")
        return value

    @staticmethod
    def _refuse(context, i: int, exc: RequestError) -> str:
        context.set_response_status(exc.status, PHRASES.get(exc.status, "Bad Request"), idx=i)
        context.set_response_content_type(i, JSON)
        if exc.retry_after is not None:
            context.set_response_header(i, "Retry-After", str(int(exc.retry_after)))
        return error_json(exc.message)

    def _handle_generate(self, data, context) -> list:
        engine = self.engine
        out: list = [None] * len(data)
        requests, where = [], []
        for i, row in enumerate(data):
            try:
                requests.append(engine.parse_generate(self._payload(row)))
                where.append(i)
            except RequestError as exc:
                out[i] = self._refuse(context, i, exc)
        if not requests:
            return out
        for i, r in zip(where, requests):
            context.set_response_header(i, DECODER_HEADER, engine.decoder(r))
        on_chars = None
        if any(r.stream for r in requests):
            for i, r in zip(where, requests):
                if r.stream:
                    context.set_response_content_type(i, NDJSON)
            on_chars = self._stream_sender(context, where)
        for i, r, answer in zip(where, requests, engine.answer(requests, on_chars=on_chars)):
            if r.stream:
                out[i] = stream_end(answer.names, answer.logprobs)  # the last chunk
            else:
                context.set_response_content_type(i, JSON)
                out[i] = answer.to_json()
        return out

    def _stream_sender(self, context, where: list[int]):
        """on_chars for the engine: one HTTP chunk of NDJSON lines per step and request."""
        send = getattr(context, "send_intermediate", None)  # the stand-in context (tests)
        if send is None:
            from ts.handler_utils.utils import send_intermediate_predict_response

            def send(i: int, chunk: bytes) -> None:
                send_intermediate_predict_response({i: chunk}, {i: context.request_ids[i]},
                                                   "Intermediate Prediction success", 200, context)

        def on_chars(request_index: int, chars) -> None:
            send(where[request_index], stream_lines(chars))

        return on_chars

    def _handle_sessions(self, data, context) -> list:
        engine = self.engine
        out: list = [None] * len(data)
        items, where = [], []
        for i, row in enumerate(data):
            sid = context.get_request_header(i, contract.SESSION_HEADER) or None
            if sid is not None and (len(sid) > MAX_SESSION_ID or not sid.isprintable()):
                out[i] = self._refuse(context, i, RequestError(
                    f"invalid session id: send back the {contract.SESSION_HEADER} header of the session's first answer "
                    f"(printable, at most {MAX_SESSION_ID} characters)"))
                continue
            try:
                items.append((sid, engine.parse_session(self._payload(row))))
                where.append(i)
            except RequestError as exc:
                if sid is not None:
                    context.set_response_header(i, contract.SESSION_HEADER, sid)
                out[i] = self._refuse(context, i, exc)
        for i, (sid, answer, cached) in zip(where, engine.session_json(items) if items else []):
            context.set_response_header(i, contract.SESSION_HEADER, sid)
            if isinstance(answer, RequestError):
                out[i] = self._refuse(context, i, answer)
                continue
            context.set_response_header(i, CACHE_HEADER, "hit" if cached else "miss")
            context.set_response_content_type(i, JSON)
            out[i] = answer
        return out
