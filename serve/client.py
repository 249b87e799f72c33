"""A small Python client for the served CharRNN (reads the token from TorchServe's key file).

    from serve.client import Client
    c = Client()                                   # http://127.0.0.1:8080, artifacts/serve/key_file.json
    c.generate("L")                                # ['Luiz ...']
    c.generate("Ma", num=3, temperature=0.8, seed=7)
    for event in c.stream("Jo"): print(event)      # {"index": 0, "char": "J"} ... {"names": [...], "done": true}
    with c.session() as s:                         # interactive completion
        s.type("Lu")                               # {"text": "Lu", "next": [{"char": "i", "p": ...}], "completion": ...}
        s.append("c")                              # sent as {"text": "Luc"}

Errors: ClientError(status, message) for a refused request (`retry_after` when the server sent
Retry-After), status 0 when the server cannot be reached. A Session sends the whole text on
every request, so it never depends on what the server remembers: a restarted server, an evicted
session or another replica behind a load balancer answers it the same.

Command line (an alias of `python -m tools.generate --backend server`):
              python -m serve.client --prefix L [-n 3 --temperature 0.8 --seed 7 --stream]
              python -m serve.client --session Lu --session Luc     (one session, several requests)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import requests

from core import contract

SEQUENCE_ID = contract.SESSION_HEADER


class ClientError(RuntimeError):
    """A refused request (`status` the HTTP status), or 0 when the server could not be reached."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status, self.message, self.retry_after = status, message, retry_after


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8080", key_file: str | Path = contract.DEFAULT_KEY_FILE,
                 management_url: str | None = "http://127.0.0.1:8081", model: str = contract.MODEL,
                 session_model: str = contract.SESSION_MODEL, timeout: float = 30.0, token: str | None = None):
        """`token`: a fixed client token, a cluster gateway's (docs/deploy.md), instead of the
        key TorchServe writes into `key_file` (never renewed: the gateway's does not expire)."""
        self.url, self.key_file, self.management_url = url.rstrip("/"), Path(key_file), management_url
        self.model, self.session_model, self.timeout = model, session_model, timeout
        self.http = requests.Session()
        self.token = token
        self._key: str | None = token

    # -- token
    def _read_key(self) -> str:
        if self.token is not None:
            return self.token
        try:
            return json.loads(self.key_file.read_text())["inference"]["key"]
        except (OSError, ValueError, KeyError) as exc:
            raise ClientError(0, f"cannot read the inference key from {self.key_file} ({exc}); "
                                 "is TorchServe running (make serve)?") from None

    def _refresh_key(self) -> None:
        """Keys expire (60 min) and a restarted server has new ones: re-read the file; if
        unchanged, ask for a new one with the API key. A fixed client token is never renewed."""
        if self.token is not None:
            return
        old, self._key = self._key, self._read_key()
        if self._key == old and self.management_url:
            try:
                api = json.loads(self.key_file.read_text())["API"]["key"]
                resp = self.http.post(f"{self.management_url}/token", params={"type": "inference"},
                                      headers={"Authorization": f"Bearer {api}"}, timeout=self.timeout)
            except (OSError, ValueError, KeyError, requests.RequestException):
                return  # the request is answered InvalidKeyException, as it would be anyway
            if resp.ok:
                self._key = self._read_key()

    def _send(self, model: str, data: bytes, headers: dict, stream: bool) -> requests.Response:
        for attempt in (0, 1):
            try:
                return self.http.post(f"{self.url}/predictions/{model}", data=data, headers=headers,
                                      timeout=self.timeout, stream=stream)
            except requests.ConnectionError as exc:
                # a kept-alive connection the server closed as the request went out (a gateway
                # reloading, a replica going): every request is a function of its body alone, so
                # it is sent once more, on a new connection. A timeout is not retried.
                if attempt == 0 and not isinstance(exc, requests.Timeout):
                    continue
                error = exc
            except requests.RequestException as exc:  # timed out, or a malformed answer
                error = exc
            raise ClientError(0, f"cannot reach TorchServe at {self.url} ({type(error).__name__}): is it "
                                 "running (make serve)?") from None

    def _post(self, model: str, body: dict, headers: dict | None = None, stream: bool = False) -> requests.Response:
        if self._key is None:
            self._key = self._read_key()
        data = json.dumps(body).encode()
        for attempt in (0, 1):
            hdrs = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json", **(headers or {})}
            resp = self._send(model, data, hdrs, stream)
            if resp.status_code == 400 and attempt == 0 and b"InvalidKeyException" in resp.content[:300]:
                self._refresh_key()
                continue
            break
        if resp.status_code >= 400:
            try:
                data = resp.json()
                message = data.get("error") or data.get("message") or resp.text
            except ValueError:
                message = resp.text
            retry = resp.headers.get("Retry-After")
            raise ClientError(resp.status_code, message,
                              float(retry) if retry and retry.isdigit() else None)
        return resp

    # -- one-shot
    def generate(self, prefix: str = "", **fields) -> list[str]:
        """Names for `prefix`; fields: max_length, num, temperature, top_k, seed, search."""
        return self.answer(prefix, **fields)["names"]

    def answer(self, prefix: str = "", **fields) -> dict:
        """The whole answer for `prefix`: {"names", "logprobs"} (and "complete" after an n-best search)."""
        return self._post(self.model, {"prefix": prefix, **fields}).json()

    def stream(self, prefix: str = "", **fields) -> Iterator[dict]:
        """NDJSON events as the server generates: {"index", "char"}..., then {"names", "done"}."""
        resp = self._post(self.model, {"prefix": prefix, **fields, "stream": True}, stream=True)
        with resp:
            for line in resp.iter_lines():
                if line:
                    yield json.loads(line)

    # -- sessions
    def session(self, **defaults) -> Session:
        return Session(self, defaults)


class Session:
    """One interactive session: the first request opens it, `close()` (or leaving `with`) ends it.

    The session keeps its text here and sends all of it on every request (`append` too), so an
    answer never depends on the server's memory of the session (docs/serving.md, "Sessions")."""

    def __init__(self, client: Client, defaults: dict):
        self.client, self.defaults, self.id, self.text = client, defaults, None, ""

    def _send(self, body: dict) -> dict:
        headers = {SEQUENCE_ID: self.id} if self.id else {}
        resp = self.client._post(self.client.session_model, {**self.defaults, **body}, headers)
        self.id = resp.headers.get(SEQUENCE_ID, self.id)
        answer = resp.json()
        self.text = answer.get("text", self.text)
        return answer

    def type(self, text: str, **fields) -> dict:
        """Send everything typed so far (edits and backspaces are fine)."""
        return self._send({"text": text, **fields})

    def append(self, chars: str, **fields) -> dict:
        """Type `chars` after the text so far (sent as the whole text)."""
        return self._send({"text": self.text + chars, **fields})

    def close(self) -> None:
        if self.id:
            sid, self.id = self.id, None
            self.client._post(self.client.session_model, {"close": True}, {SEQUENCE_ID: sid})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        except ClientError:
            if exc[0] is None:  # never hide the error that ended the block
                raise


def main(argv: list[str] | None = None) -> None:
    """`python -m tools.generate --backend server` with the caller's flags (the one generate
    command line; this module's own flags are a subset of its)."""
    import sys

    from tools.generate import main as generate

    generate(["--backend", "server", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
