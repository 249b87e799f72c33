"""A stand-in for TorchServe's `ts.context.Context`: enough of it to run the handler in-process
(tests, tools/gpu_check.py) with nothing but PyTorch installed.

It also enforces the trap TorchServe does not: a non-ASCII status phrase raises here (in
TorchServe it kills the worker).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from core import contract

SEQUENCE_ID = contract.SESSION_HEADER


@dataclass
class Response:
    status: int
    phrase: str
    headers: dict
    body: bytes
    chunks: list = field(default_factory=list)  # intermediate (streamed) chunks, in order

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def streamed(self) -> bytes:
        return b"".join(self.chunks) + self.body


class StandInContext:
    def __init__(self, model_dir: str | Path, *, gpu_id: int | None = None, model_yaml_config: dict | None = None,
                 serialized_file: str = contract.TORCHSCRIPT, model_name: str = contract.MODEL, batch_size: int = 8):
        self.model_name = model_name
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": gpu_id, "batch_size": batch_size}
        self.model_yaml_config = model_yaml_config or {}
        self.manifest = {"model": {"modelName": model_name, "serializedFile": serialized_file}}
        self._ids = itertools.count()
        self.request_ids: dict[int, str] = {}
        self._request_headers: list[dict] = []
        self._status: list[tuple[int, str | None]] = []
        self._response_headers: list[dict] = []
        self._chunks: list[list[bytes]] = []

    # -- what the handler calls
    def get_request_header(self, idx: int, key: str):
        return self._request_headers[idx].get(key)

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if not phrase.isascii():
            raise AssertionError(f"non-ASCII status phrase {phrase!r} would kill a TorchServe worker")
        self._status[idx] = (code, phrase)

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._response_headers[idx][key] = value

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_headers(self, idx: int) -> dict:
        return self._response_headers[idx]

    def send_intermediate(self, idx: int, chunk: bytes) -> None:
        self._chunks[idx].append(bytes(chunk))

    # -- what a test calls
    def run(self, handler, bodies: list, headers: list[dict] | None = None) -> list[Response]:
        """One TorchServe batch: each body is what the worker passes as the row's "body"."""
        return self.run_rows(handler, [{"body": b} for b in bodies], headers)

    def run_rows(self, handler, rows: list, headers: list[dict] | None = None) -> list[Response]:
        """One TorchServe batch of raw rows (e.g. {"prefix": b"L"} for a form-encoded request)."""
        n = len(rows)
        self.request_ids = {i: f"req-{next(self._ids)}" for i in range(n)}
        self._request_headers = [dict(h) for h in (headers or [{} for _ in range(n)])]
        self._status = [(200, None)] * n
        self._response_headers = [{} for _ in range(n)]
        self._chunks = [[] for _ in range(n)]
        out = handler.handle(rows, self)
        if not isinstance(out, list) or len(out) != n:
            raise AssertionError(f"handler returned {type(out).__name__} of the wrong length")
        responses = []
        for i, value in enumerate(out):
            body = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            code, phrase = self._status[i]
            responses.append(Response(code, phrase or "", self._response_headers[i], body, self._chunks[i]))
        return responses
