"""Sessions are bounded caches that any request rebuilds from its text: evicted state, an empty
cache (a restart) or an expired session give the answer a fresh decode gives when the request
carries `text`; `append` alone for a session the server does not know gets the documented 404;
the caches stay within their stated bounds under many sessions and the process's memory stays
flat; thousands of sessions are open at once with no admission limit; the client always sends
the whole text. In-process (stand-in context); `make soak` and the real-TorchServe tests repeat
the essentials against TorchServe.
"""

from __future__ import annotations

import json
import os
import random
import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml

from serve.client import Client, ClientError
from serve.engine import Engine
from serve.handler import CharRNNHandler
from serve.sessions import ENTRY_OVERHEAD, AnswerCache, SessionStore, SessionTexts, StateCache
from serve.standin import SEQUENCE_ID, StandInContext
from serve.validation import SessionRequest

ROOT = Path(__file__).resolve().parents[1]
TYPED = ["Ma", "Mar", "Mari", "Maria", "Jo", "Joã", "João", "Lu", "Luc", "Luca", "Lucas", "A", "An", "Ana", "Rafa"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session_handler(model_dir: Path, **sessions) -> tuple[CharRNNHandler, StandInContext]:
    """The session handler with the shipped model config, `sessions` overriding its handler.sessions."""
    config = yaml.safe_load((ROOT / "serve" / "config" / "charrnn_session.yaml").read_text())
    config["handler"]["sessions"].update(sessions)
    ctx = StandInContext(model_dir, model_yaml_config=config)
    handler = CharRNNHandler()
    handler.initialize(ctx)
    return handler, ctx


def call(handler, ctx, sid: str | None, body: dict):
    return ctx.run(handler, [json.dumps(body).encode()], [{SEQUENCE_ID: sid} if sid else {}])[0]


def same_answer(got: dict, want: dict) -> None:
    """Equal but for float noise: characters, names and flags exactly, probabilities to a
    relative tolerance with a small absolute floor."""
    assert {k: v for k, v in got.items() if k != "session"}.keys() == {k for k in want if k != "session"}
    assert got["text"] == want["text"] and got["completion"] == want["completion"]
    assert [c["char"] for c in got["next"]] == [c["char"] for c in want["next"]]
    assert [c["p"] for c in got["next"]] == pytest.approx([c["p"] for c in want["next"]], rel=1e-4, abs=1e-6)
    assert [c["name"] for c in got["completions"]] == [c["name"] for c in want["completions"]]
    assert [c["logprob"] for c in got["completions"]] == pytest.approx(
        [c["logprob"] for c in want["completions"]], rel=1e-4, abs=1e-5)
    assert got["completions_complete"] == want["completions_complete"]


@pytest.fixture(scope="module")
def fresh(tiny_artifacts):
    """Answers of a fresh engine (empty caches) for each text, one request at a time."""
    engine = Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json)
    torch.set_num_threads(1)
    answers = {}
    for text in TYPED:
        answers[text] = engine.session([(None, SessionRequest(text=text))])[0]
        engine.sessions.clear_caches()
    return answers


def test_an_evicted_state_rebuilt_from_text_gives_the_fresh_answer(model_dir, fresh):
    # caches of two states and no answers: every request computes, most from evicted state
    handler, ctx = session_handler(model_dir, state_cache_mib=2 * 24 * 4 / 2**20, answer_cache_mib=0)
    store = handler.engine.sessions
    assert store.states.slots == 2
    for text in TYPED:  # typed one character at a time by one session, then by others in between
        r = call(handler, ctx, "typist", {"text": text})
        assert r.status == 200 and r.headers["X-CharRNN-Session-Cache"] == "miss"
        same_answer(json.loads(r.text), fresh[text])
        call(handler, ctx, "other", {"text": random.Random(text).choice(["Pedro", "Be", "Zoe", "Car"])})
    assert store.states.partial > 0 and store.states.misses > 0  # continued from a prefix, and rebuilt
    assert len(store.states) <= 2
    # the same session's state evicted, then `append` with its text known: continues correctly
    call(handler, ctx, "typist", {"text": "Mar"})
    for other in ("Pedro", "Zoe", "Be"):
        call(handler, ctx, "other", {"text": other})
    assert "Mar" not in store.states
    same_answer(json.loads(call(handler, ctx, "typist", {"append": "i"}).text), fresh["Mari"])


def test_sessions_of_one_batch_continue_from_their_own_states(model_dir, fresh):
    handler, ctx = session_handler(model_dir, answer_cache_mib=0)
    starts, more = ["Ma", "Jo", "Lu", "An"], ["ri", "ã", "cas", "a"]
    out = ctx.run(handler, [json.dumps({"text": t}).encode() for t in starts], [{SEQUENCE_ID: t} for t in starts])
    for r, t in zip(out, starts):
        same_answer(json.loads(r.text), fresh[t])
    assert all(t in handler.engine.sessions.states for t in starts)
    out = ctx.run(handler, [json.dumps({"append": m}).encode() for m in more], [{SEQUENCE_ID: t} for t in starts])
    assert handler.engine.sessions.states.partial >= 4  # each continued from its own cached text
    for r, t, m in zip(out, starts, more):
        same_answer(json.loads(r.text), fresh[t + m])


def test_a_restart_rebuilds_every_session_from_its_text(model_dir, fresh):
    before, ctx = session_handler(model_dir)
    sids = {}
    for text in TYPED:
        r = call(before, ctx, None, {"text": text[:1]})
        sids[text] = r.headers[SEQUENCE_ID]
        for ch in text[1:]:
            assert call(before, ctx, sids[text], {"append": ch}).status == 200
    after, ctx2 = session_handler(model_dir)  # a new worker: nothing cached, no session known
    for text, sid in sids.items():
        r = call(after, ctx2, sid, {"text": text})
        assert r.status == 200 and r.headers[SEQUENCE_ID] == sid
        answer = json.loads(r.text)
        assert answer["session"] == sid
        same_answer(answer, fresh[text])
    # `append` alone for a session this worker never saw: the documented 404, saying to send text
    r = call(after, ctx2, "s-from-before-the-restart", {"append": "a"})
    assert r.status == 404 and r.headers["content-type"] == "application/json"
    assert "send the whole 'text'" in json.loads(r.text)["error"]


def test_a_cached_answer_is_the_computed_one_and_keyed_by_every_option(model_dir, fresh):
    handler, ctx = session_handler(model_dir)
    first = call(handler, ctx, "a", {"text": "Mari"})
    again = call(handler, ctx, "b", {"text": "Mari"})  # another session typing the same text
    assert (first.headers["X-CharRNN-Session-Cache"], again.headers["X-CharRNN-Session-Cache"]) == ("miss", "hit")
    assert json.loads(again.text) == {**json.loads(first.text), "session": "b"}
    same_answer(json.loads(again.text), fresh["Mari"])
    for options in ({"top_k": 2}, {"max_length": 6}, {"completions": 1}):
        r = call(handler, ctx, "b", {"text": "Mari", **options})
        assert r.headers["X-CharRNN-Session-Cache"] == "miss"
        answer = json.loads(r.text)
        assert len(answer["next"]) == options.get("top_k", 5)
        assert len(answer["completion"]) <= options.get("max_length", 64)
        assert len(answer["completions"]) <= options.get("completions", 3)


def test_idle_sessions_expire_and_their_text_still_works(model_dir):
    handler, ctx = session_handler(model_dir, idle_seconds=120)
    clock = Clock()
    handler.engine.sessions.texts.clock = clock
    assert call(handler, ctx, "idle", {"text": "Jo"}).status == 200
    assert call(handler, ctx, "busy", {"text": "Ra"}).status == 200
    for _ in range(5):  # "busy" keeps typing, "idle" does not
        clock.now += 30
        assert call(handler, ctx, "busy", {"append": "a"}).status == 200
    texts = handler.engine.sessions.texts
    assert "idle" not in texts and texts.expired == 1 and "busy" in texts  # idle 150 s > 120 s
    assert call(handler, ctx, "idle", {"append": "a"}).status == 404
    r = call(handler, ctx, "idle", {"text": "Joa"})
    assert r.status == 200 and json.loads(r.text)["text"] == "Joa"


def test_thousands_of_open_sessions_with_no_admission_limit(model_dir):
    """3,000 sessions open at once (the old design refused the 25th): all answered, all
    continued with `append`, since their texts are held."""
    handler, ctx = session_handler(model_dir)
    rng = random.Random(0)
    sids = []
    for k in range(0, 3000, 32):  # TorchServe-sized batches of new sessions
        out = ctx.run(handler, [json.dumps({"text": rng.choice(TYPED)[:2]}).encode()] * 32, [{}] * 32)
        assert {r.status for r in out} == {200}
        sids += [r.headers[SEQUENCE_ID] for r in out]
    assert len(set(sids)) == len(sids) == 3008 and len(handler.engine.sessions.texts) == 3008
    for k in range(0, len(sids), 32):
        out = ctx.run(handler, [b'{"append": "a"}'] * 32, [{SEQUENCE_ID: s} for s in sids[k:k + 32]])
        assert {r.status for r in out} == {200}
        assert all(json.loads(r.text)["text"].endswith("a") for r in out)


def test_the_caches_stay_within_their_bounds_under_many_sessions(tiny_artifacts):
    """20,000 requests of 5,000 sessions over small caches: the counts and the accounted bytes
    never pass their bounds, and what Python really allocates for the session texts and the
    answers stays below the accounted bytes (tracemalloc), so the stated bound is a bound."""
    store = SessionStore(1000, 3600, state_cache_mib=0.01, answer_cache_mib=0.25)
    engine = Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json, sessions=store)
    torch.set_num_threads(1)
    rng = random.Random(1)
    letters = "AMaeioulnrs"
    for k in range(0, 20_000, 40):
        items = [(f"session-{rng.randrange(5000)}", SessionRequest(
            text="".join(rng.choice(letters) for _ in range(rng.randint(1, 6))), completions=0)) for _ in range(40)]
        assert all(not isinstance(a.answer, Exception) for a in engine.session_json(items))
        assert len(store.texts) <= 1000 and store.answers.nbytes <= store.answers.max_bytes
        assert len(store.states) <= store.states.slots
    assert store.texts.evicted > 0 and store.answers.evicted > 0 and store.answers.hits > 0
    assert store.states.nbytes <= 0.01 * 2**20  # preallocated: its size is the bound

    # the accounting against what is really allocated: fill fresh ones from empty
    tracemalloc.start()
    try:
        base = tracemalloc.take_snapshot()
        texts, answers = SessionTexts(5000, 3600), AnswerCache(2**20)
        for i in range(5000):
            texts.put(f"s-{os.urandom(16).hex()}", "Maria Eduarda"[: 1 + i % 13])
        for i in range(3000):
            answers.put((f"Ma{i}", 5, 24, 3), json.dumps({"text": f"Ma{i}", "next": [{"char": "r", "p": 0.5}] * 5,
                                                          "completion": "Maria", "completions": []}))
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename") if s.size_diff > 0)
    finally:
        tracemalloc.stop()
    assert grown <= texts.nbytes() + answers.nbytes, (grown, texts.nbytes(), answers.nbytes)
    assert ENTRY_OVERHEAD > 0


def test_the_state_cache_reuses_the_least_recently_used_slot():
    cache = StateCache(2, (1, 3))
    cache.put_many(["a", "b"], torch.tensor([[[1.0] * 3], [[2.0] * 3]]))
    assert cache.longest("ax") == ("a", 0)  # "a" is now the most recently used
    cache.put_many(["c"], torch.tensor([[[3.0] * 3]]))
    assert "b" not in cache and "a" in cache and "c" in cache
    prefix, slot = cache.longest("cat")
    assert prefix == "c" and cache.gather([slot]).tolist() == [[[3.0] * 3]]
    assert cache.longest("zz") == ("", None) and (cache.hits, cache.partial, cache.misses) == (0, 2, 1)
    cache.put_many(["x", "y", "z"], torch.tensor([[[4.0] * 3], [[5.0] * 3], [[6.0] * 3]]))  # more than fits
    assert len(cache) == 2 and cache.gather([cache.longest("z")[1]]).tolist() == [[[6.0] * 3]]
    assert cache.gather([cache.longest("y")[1]]).tolist() == [[[5.0] * 3]]
    with pytest.raises(ValueError):
        StateCache(0, (1, 3))


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_memory_stays_flat_under_a_churn_of_sessions(tiny_artifacts):
    """4,000 sessions opened, typed into, then closed or abandoned, in batches of 8, over the
    shipped cache sizes: once the caches are full the process's resident memory stops growing."""
    store = SessionStore(500, 3600, state_cache_mib=0.05, answer_cache_mib=0.5)
    engine = Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json, sessions=store)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = random.Random(2)

    def churn(count: int) -> None:
        for _ in range(0, count, 8):
            texts = ["".join(rng.choice("AMaeioln") for _ in range(rng.randint(1, 4))) for _ in range(8)]
            opened = engine.session_json([(None, SessionRequest(text=t, completions=1)) for t in texts])
            sids = [a.session for a in opened]
            engine.session_json([(s, SessionRequest(append="r", completions=1)) for s in sids])
            engine.session_json([(s, SessionRequest(close=True)) for s in sids[:4]])  # half abandoned

    try:
        churn(1500)
        assert store.answers.evicted > 0 and store.texts.evicted > 0  # full
        before = rss_mib()
        churn(4000)
        grown = rss_mib() - before
    finally:
        torch.set_num_threads(threads)
    assert len(store.texts) <= 500 and store.answers.nbytes <= store.answers.max_bytes
    assert grown < 8, f"resident memory grew {grown:.1f} MiB over 4,000 sessions"


def test_the_shipped_bounds_are_stated_and_large():
    sessions = yaml.safe_load((ROOT / "serve" / "config" / "charrnn_session.yaml").read_text())["handler"]["sessions"]
    store = SessionStore.from_config(sessions)
    assert store.texts.max_sessions >= 10_000  # the benchmark's open sessions fit
    assert store.state_cache_bytes == sessions["state_cache_mib"] * 2**20
    assert store.answers.max_bytes == sessions["answer_cache_mib"] * 2**20


# ---------------------------------------------------------------- the client


class ForgetfulServer(BaseHTTPRequestHandler):
    """Answers like a session model that remembers nothing (every request lands on a new
    replica): `append` alone is refused as the handler refuses it, `text` is answered."""

    seen: ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        sid = self.headers.get(SEQUENCE_ID) or "s-new"
        ForgetfulServer.seen.append(body)
        if "close" in body:
            status, answer = 200, {"session": sid, "closed": True}
        elif "text" not in body:
            status, answer = 404, {"error": f"session {sid!r} is not known here: send the whole 'text'"}
        else:
            status, answer = 200, {"session": sid, "text": body["text"], "next": [], "completion": body["text"]}
        data = json.dumps(answer).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), SEQUENCE_ID: sid}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_the_client_always_sends_the_whole_text(tmp_path):
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": "k"}, "management": {"key": "m"}, "API": {"key": "a"}}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), ForgetfulServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(f"http://127.0.0.1:{server.server_port}", key_file, None, timeout=5)
        with client.session() as s:
            assert s.type("Lu")["text"] == "Lu" and s.id == "s-new"
            assert s.append("c")["text"] == "Luc"
            assert s.append("as", top_k=2)["text"] == "Lucas"
            assert s.type("Lu")["text"] == "Lu"  # backspaces
            assert s.append("iz")["text"] == "Luiz"
        assert ForgetfulServer.seen == [{"text": "Lu"}, {"text": "Luc"}, {"text": "Lucas", "top_k": 2},
                                        {"text": "Lu"}, {"text": "Luiz"}, {"close": True}]
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
