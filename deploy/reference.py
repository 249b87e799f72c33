"""What every answer of a cluster must equal: the handler of each archive, unpacked and started
in-process with the stand-in context (as `serve.archive --check` starts it), answering the same
body alone. A session keystroke's reference is its text decoded from scratch, under a session id
of its own that the handler never saw (as a replica sees a session moved to it), so an answer that
a replica gave from a cached, moved or rebuilt state must equal it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

import torch
import yaml

from core import contract
from serve.handler import CharRNNHandler
from serve.standin import SEQUENCE_ID, StandInContext

REL, ABS = 1e-4, 1e-6  # probabilities: relative tolerance with an absolute floor


class Reference:
    def __init__(self, model_store: str | Path):
        torch.set_num_threads(1)  # as in the workers (handler.threads)
        self._dir = Path(tempfile.mkdtemp(prefix="charrnn-reference-"))
        self._lock = threading.Lock()  # one handler call at a time (the load threads share it)
        self._cache: dict[tuple[str, str], tuple[int, dict]] = {}
        self._handlers: dict[str, tuple[CharRNNHandler, StandInContext]] = {}
        self._n = 0
        try:
            for model in contract.MODELS:
                unpacked = self._dir / model
                with zipfile.ZipFile(Path(model_store) / contract.archive(model)) as mar:
                    mar.extractall(unpacked)
                manifest = json.loads((unpacked / "MAR-INF" / "MANIFEST.json").read_text())["model"]
                config = yaml.safe_load((unpacked / "model-config.yaml").read_text()) or {}
                context = StandInContext(unpacked, model_yaml_config=config, model_name=manifest["modelName"],
                                         serialized_file=manifest["serializedFile"])
                handler = CharRNNHandler()
                handler.initialize(context)
                self._handlers[model] = (handler, context)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def answer(self, model: str, body: dict) -> tuple[int, dict]:
        """(status, JSON answer) of `body` sent alone to a fresh handler state (a session body:
        as the first request of a new session)."""
        key = (model, json.dumps(body, sort_keys=True))
        with self._lock:
            if key not in self._cache:
                handler, context = self._handlers[model]
                headers = {}
                if model == contract.SESSION_MODEL:  # a session id no replica ever saw: decoded from its text
                    self._n += 1
                    headers = {SEQUENCE_ID: f"reference-{self._n}"}
                response = context.run(handler, [json.dumps(body).encode()], [headers])[0]
                self._cache[key] = (response.status, json.loads(response.body))
                if headers:  # this session served its purpose: it must not count against any cap
                    context.run(handler, [b'{"close": true}'], [{SEQUENCE_ID: headers[SEQUENCE_ID]}])
            return self._cache[key]


def _close(a, b) -> bool:
    return abs(a - b) <= max(ABS, REL * max(abs(a), abs(b)))


def differences(got: dict, want: dict, path: str = "") -> list[str]:
    """Where `got` differs from `want`: names, characters, flags and ids exactly, numbers within
    REL (with the ABS floor); the session id (`session`) is the one thing a replica names itself."""
    if isinstance(want, dict) and isinstance(got, dict):
        keys = (set(got) | set(want)) - ({"session"} if not path else set())
        return [d for k in sorted(keys) for d in differences(got.get(k), want.get(k), f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, f"{path}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if _close(got, want) else [f"{path}: {got} != {want}"]
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]
