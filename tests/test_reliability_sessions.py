"""Session state is bounded: beyond the open-session cap a new session is refused cleanly (429,
JSON error, Retry-After, TorchServe's sequence ended), idle sessions expire (injected clock),
memory stays flat under a churn of sessions; the client reports an unreachable server and a
lost session clearly. In-process (stand-in context); `make soak` repeats this against TorchServe.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import yaml

from serve.client import Client, ClientError, SessionLost
from serve.engine import Engine
from serve.handler import CharRNNHandler
from serve.sessions import SessionStore
from serve.standin import SEQUENCE_END, SEQUENCE_ID, SEQUENCE_START, StandInContext
from serve.validation import SessionRequest

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session_handler(model_dir: Path, **sessions) -> tuple[CharRNNHandler, StandInContext, Clock]:
    """The session handler with the shipped model config (TorchServe's sequenceMaxIdleMSec
    included), `sessions` overriding its handler.sessions, and a clock the test moves."""
    config = yaml.safe_load((ROOT / "serve" / "config" / "charrnn_session.yaml").read_text())
    config["handler"]["sessions"].update(sessions)
    ctx = StandInContext(model_dir, model_yaml_config=config)
    handler = CharRNNHandler()
    handler.initialize(ctx)
    clock = Clock()
    handler.engine.sessions.clock = clock
    return handler, ctx, clock


def call(handler, ctx, sid: str, body: dict, opens: bool = False):
    headers = {SEQUENCE_ID: sid, **({SEQUENCE_START: "true"} if opens else {})}
    return ctx.run(handler, [json.dumps(body).encode()], [headers])[0]


def test_the_shipped_cap_is_below_torchserves_slots():
    config = yaml.safe_load((ROOT / "serve" / "config" / "charrnn_session.yaml").read_text())
    sessions = config["handler"]["sessions"]
    assert sessions["open_max"] < config["maxNumSequence"] <= config["maxWorkers"] * config["batchSize"]
    assert sessions["open_max"] <= sessions["max"]
    assert sessions["idle_seconds"] * 1000 > config["sequenceMaxIdleMSec"]


def test_a_session_beyond_the_cap_is_refused_cleanly(model_dir):
    handler, ctx, clock = session_handler(model_dir, open_max=3)
    store = handler.engine.sessions
    assert store.max_open == 3 and store.open_window == 60  # sequenceMaxIdleMSec / 1000
    for i in range(3):
        r = call(handler, ctx, f"s{i}", {"text": "Ma"}, opens=True)
        assert r.status == 200 and SEQUENCE_END not in r.headers
        clock.now += 1
    r = call(handler, ctx, "s3", {"text": "Ma"}, opens=True)
    assert r.status == 429 and r.phrase == "Too Many Requests"
    assert r.headers["content-type"] == "application/json"
    error = json.loads(r.text)["error"]
    assert "too many open sessions" in error and "the limit is 3" in error and '"close": true' in error
    assert r.headers["Retry-After"] == "57"  # s0 (used 3 s ago) leaves the 60 s window in 57 s
    assert r.headers[SEQUENCE_END] == "s3"  # TorchServe's slot is freed at once
    assert "s3" not in store and store.refused == 1
    # the open ones carry on; a batch of several new ones is admitted up to the cap only
    assert call(handler, ctx, "s1", {"append": "r"}).status == 200
    assert call(handler, ctx, "s0", {"close": True}).status == 200
    heads = [{SEQUENCE_ID: sid, SEQUENCE_START: "true"} for sid in ("n1", "n2")]
    out = ctx.run(handler, [b'{"text": "A"}', b'{"text": "B"}'], heads)
    assert [r.status for r in out] == [200, 429] and SEQUENCE_END in out[1].headers
    # sessions idle beyond the window no longer count (TorchServe freed their slots too)
    clock.now += 61
    assert store.open_count() == 0 and len(store) == 3
    for i in range(3):
        assert call(handler, ctx, f"m{i}", {"text": "Lu"}, opens=True).status == 200
    # ... but returning to one now would need a fourth slot: refused, its state kept for later
    r = call(handler, ctx, "s1", {"append": "i"})
    assert r.status == 429 and r.headers[SEQUENCE_END] == "s1" and "s1" in store
    assert call(handler, ctx, "m0", {"close": True}).status == 200  # a slot frees up
    r = call(handler, ctx, "s1", {"append": "i"})
    assert r.status == 200 and json.loads(r.text)["text"] == "Mari"


def test_idle_sessions_expire(model_dir):
    handler, ctx, clock = session_handler(model_dir)
    store = handler.engine.sessions
    assert call(handler, ctx, "idle", {"text": "Jo"}, opens=True).status == 200
    assert call(handler, ctx, "busy", {"text": "Ra"}, opens=True).status == 200
    for _ in range(5):  # "busy" keeps typing, "idle" does not
        clock.now += 30
        assert call(handler, ctx, "busy", {"append": "a"}).status == 200
    assert "idle" not in store and store.expired == 1 and "busy" in store  # idle 150 s > 120 s
    r = call(handler, ctx, "idle", {"append": "a"})
    assert r.status == 404 and "unknown or expired" in json.loads(r.text)["error"] and r.headers[SEQUENCE_END] == "idle"
    r = call(handler, ctx, "idle", {"text": "Joa"})  # the whole text rebuilds it
    assert r.status == 200 and json.loads(r.text)["text"] == "Joa"


def test_a_failed_request_ends_the_sequence_only_when_nothing_is_kept(model_dir):
    handler, ctx, _ = session_handler(model_dir)
    r = call(handler, ctx, "bad-open", {"append": 5}, opens=True)  # refused on opening: not kept
    assert r.status == 400 and r.headers[SEQUENCE_END] == "bad-open"
    assert call(handler, ctx, "good", {"text": "A"}, opens=True).status == 200
    r = call(handler, ctx, "good", {"append": 5})  # refused, but the open session lives on
    assert r.status == 400 and SEQUENCE_END not in r.headers
    r = call(handler, ctx, "x" * 300, {"text": "A"}, opens=True)  # an over-long session id
    assert r.status == 400 and "invalid session id" in json.loads(r.text)["error"]
    assert SEQUENCE_ID not in r.headers and r.headers[SEQUENCE_END] == "x" * 300


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_memory_stays_flat_under_a_churn_of_sessions(tiny_artifacts):
    """3,000 sessions opened, typed into, then closed or abandoned, in batches of 8: the store
    stays bounded and the process's resident memory does not grow (measured after a warm-up)."""
    clock = Clock()
    store = SessionStore(128, 120.0, clock, max_open=24, open_window=60.0)
    engine = Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json, sessions=store)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def churn(first: int, count: int) -> None:
        for k in range(first, first + count, 8):
            sids = [f"c{j}" for j in range(k, k + 8)]
            opened = engine.session([(s, SessionRequest(text="Ma"), True) for s in sids])
            assert all(isinstance(a, dict) for a in opened), opened
            engine.session([(s, SessionRequest(append="ri"), False) for s in sids])
            engine.session([(s, SessionRequest(close=True), False) for s in sids[:4]])  # half abandoned
            clock.now += 20  # abandoned ones leave the open window after 3 rounds, expire after 6
            assert len(store) <= store.max_sessions and store.open_count() <= store.max_open

    try:
        churn(0, 600)
        before = rss_mib()
        churn(600, 3000)
        grown = rss_mib() - before
    finally:
        torch.set_num_threads(threads)
    assert store.refused == 0 and store.expired > 1000 and len(store) <= 6 * 4 + 8
    assert grown < 8, f"resident memory grew {grown:.1f} MiB over 3,000 sessions"


# ---------------------------------------------------------------- the client


class FakeServer(BaseHTTPRequestHandler):
    """Answers like the session model whose worker lost every session (e.g. after a restart)."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        sid = self.headers.get(SEQUENCE_ID)
        if sid:
            status, body, headers = 404, {"error": f"session {sid!r} is unknown or expired"}, {SEQUENCE_END: sid}
        else:
            status, body, headers = 200, {"session": "ts-seq-new", "text": "A", "next": [], "completion": "A"}, \
                {SEQUENCE_ID: "ts-seq-new"}
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_the_client_reports_a_lost_session_and_opens_a_new_one(tmp_path):
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": "k"}, "management": {"key": "m"}, "API": {"key": "a"}}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = Client(f"http://127.0.0.1:{server.server_port}", key_file, None, timeout=5)
        session = client.session()
        session.id = "ts-seq-old"  # a session the server no longer knows
        with pytest.raises(SessionLost) as info:
            session.append("a")
        assert info.value.status == 404 and "ts-seq-old was lost" in str(info.value)
        assert session.id is None
        assert session.type("A")["session"] == "ts-seq-new" and session.id == "ts-seq-new"
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_reports_an_unreachable_server(tmp_path):
    import socket

    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": "k"}}))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", key_file, None, timeout=5)
    with pytest.raises(ClientError) as info:
        client.generate("A")
    assert info.value.status == 0 and "cannot reach TorchServe" in str(info.value)
    with pytest.raises(ClientError, match="cannot read the inference key"):
        Client(f"http://127.0.0.1:{port}", tmp_path / "missing.json", None).generate("A")
