"""bench/sessions.py without TorchServe: the open-loop typists against a fake session server
(keystrokes on schedule, latency from the scheduled time, so a slow server cannot hide behind
fewer requests; texts typed in order; sessions closed or abandoned), the open-session hold,
the names sources, the rows and the Markdown. The real run is `make bench-serving`."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from contextlib import nullcontext
from typing import Self

import pytest

from bench import sessions as bs
from tests.fake_http import read_json_request


class FakeSessions:
    """The session model's HTTP behaviour on a loopback port, in its own thread: `text` always
    answered, `append` only for a session it holds (else 404), `close` forgets it; each answer
    after `delay` s, one at a time when `serial` (a server slower than the arrivals)."""

    def __init__(self, delay: float = 0.0, serial: bool = False):
        self.delay, self.serial = delay, serial
        self.texts: dict[str, str] = {}
        self.seen: set[str] = set()
        self.log: list[tuple[str, dict]] = []  # (session id or "", body) in arrival order
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.counter = 0

    def __enter__(self) -> Self:
        self.thread.start()

        async def start():
            self.lock = asyncio.Lock()
            return await asyncio.start_server(self._serve, "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        async def stop():
            self.server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _serve(self, reader, writer) -> None:
        try:
            while True:
                request = await read_json_request(reader)
                if request is None:
                    return
                _path, headers, body = request
                if self.serial:
                    async with self.lock:
                        await asyncio.sleep(self.delay)
                elif self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(self._answer(headers.get("ts_request_sequence_id"), body))
                await writer.drain()
        finally:
            writer.close()

    def _answer(self, sid: str | None, body: dict) -> bytes:
        self.log.append((sid or "", body))
        if sid is None:
            self.counter += 1
            sid = f"s-{self.counter}"
        cache = ""
        if body.get("close"):
            self.texts.pop(sid, None)
            status, answer = 200, {"session": sid, "closed": True}
        elif "text" in body or sid in self.texts:
            text = body["text"] if "text" in body else self.texts[sid] + body.get("append", "")
            cache = "hit" if text in self.seen else "miss"
            self.seen.add(text)
            self.texts[sid] = text
            status, answer = 200, {"session": sid, "text": text}
        else:
            status, answer = 404, {"error": f"session {sid!r} is not known here: send the whole 'text'"}
        data = json.dumps(answer).encode()
        extra = f"X-CharRNN-Session-Cache: {cache}\r\n" if cache else ""
        return (f"HTTP/1.1 {status} X\r\ncontent-length: {len(data)}\r\nts_request_sequence_id: {sid}\r\n{extra}\r\n"
                .encode() + data)


def drive(server: FakeSessions, names, typists: int, seconds: float, period: float, connections: int = 8,
          append: bool = False) -> dict:
    out, wall = asyncio.run(bs.drive_typists("127.0.0.1", server.port, "token", names, typists, seconds, 0.2,
                                             period, connections, append, nullcontext))
    return bs.summarize(out, typists, seconds, wall)


def test_typists_type_their_names_on_schedule():
    names = ["Ana", "Bruno", "Cauã", "Davi"]
    with FakeSessions(delay=0.01) as server:
        row = drive(server, names, typists=12, seconds=1.0, period=0.1)
    # 12 typists x 10 keystrokes in the second (a slot after a name's last letter is its close
    # or, every other name, nothing: the session abandoned)
    assert 90 <= row["keystrokes"] <= 121, row
    assert row["errors"] == 0 and row["wrong_answers"] == 0 and row["statuses"] == {"200": row["keystrokes"]}
    assert row["p50_ms"] >= 10  # the server's delay is in every latency
    # every session typed its name's prefixes in order, with its id after the first answer
    by_session: dict[str, list[str]] = {}
    for sid, body in server.log:
        if sid and "text" in body:
            by_session.setdefault(sid, []).append(body["text"])
    for texts in by_session.values():
        assert all(b.startswith(a) and len(b) == len(a) + 1 for a, b in itertools.pairwise(texts)), texts
        assert any(texts[-1] and n.startswith(texts[-1]) for n in names)
    closes = sum(1 for _, body in server.log if body.get("close"))
    assert closes > 0 and row["sessions"] > closes  # some closed, some abandoned
    # the hit rate among answers that say (a close has no cache header)
    assert row["cache_hits"] + row["cache_misses"] < row["keystrokes"] and row["cache_hits"] > 0
    assert row["hit_rate"] == row["cache_hits"] / (row["cache_hits"] + row["cache_misses"])


@pytest.mark.parametrize("connections", [256, 1])
def test_latency_is_measured_from_the_scheduled_time(connections):
    """20 answers a second (a server that answers one at a time, or one connection to a server
    that takes 50 ms) behind 100 arrivals a second: every keystroke is still sent (open loop)
    and its latency includes the time it waited, far above the 50 ms of an answer; a
    closed-loop client would report about 50 ms."""
    with FakeSessions(delay=0.05, serial=connections > 1) as server:
        row = drive(server, ["Ana", "Bia"], typists=10, seconds=1.0, period=0.1, connections=connections)
    # ~9 of every 10 slots are keystrokes (the others: an abandoned name's empty slot, a close
    # whose session id had not come back yet); all sent, none waiting for an earlier answer
    assert row["keystrokes"] >= 70
    assert row["p99_ms"] > 500 and row["p50_ms"] > 200, row
    if connections > 1:  # the generator kept its schedule: the wait is the server's
        assert row["send_lag_p99_ms"] < 100
    else:  # the wait for the one connection: in the send lag, and in the latency
        assert row["send_lag_p99_ms"] > 400


def test_append_mode_continues_held_sessions():
    with FakeSessions(delay=0.005) as server:
        row = drive(server, ["Maria", "João"], typists=6, seconds=1.0, period=0.1, append=True)
    assert row["errors"] == 0 and row["wrong_answers"] == 0, row
    assert any("append" in body for _, body in server.log)


def test_open_sessions_are_held_or_refused():
    with FakeSessions() as server:
        got = asyncio.run(bs.open_sessions("127.0.0.1", server.port, "token", ["Ana", "Bruno"], 50, 8))
        assert got["opened"] == 50 and got["open_statuses"] == {"200": 50} and len(set(got["sids"])) == 50
        server.texts.pop(got["sids"][0].decode())  # one forgotten, as an evicted session would be
        statuses = asyncio.run(bs.append_all("127.0.0.1", server.port, "token", got["sids"], 8))
    assert statuses == {"200": 49, "404": 1}
    assert len(server.texts) == 49 and set(server.texts.values()) == {"Ana", "Bra"}


def test_rows_and_names(tmp_path):
    assert bs.parse_rows("1000:corpus, 2000 ,500:model") == [(1000, "corpus"), (2000, "corpus"), (500, "model")]
    for bad in ("x:corpus", "0:model", ""):
        with pytest.raises(ValueError):
            bs.parse_rows(bad)
    corpus = tmp_path / "names.tsv"
    corpus.write_text("name\tcount\nMaria\t900\nAna\t100\n")
    drawn = bs.corpus_names(corpus, 5000, seed=1)
    assert set(drawn) == {"Maria", "Ana"} and 0.85 < drawn.count("Maria") / 5000 < 0.95  # by count
    plain = tmp_path / "names.txt"
    plain.write_text("Maria\nAna\n")
    assert 0.4 < bs.corpus_names(plain, 4000).count("Ana") / 4000 < 0.6
    assert bs.names_of(str(plain), tmp_path, 10) == bs.corpus_names(plain, 10)
    assert bs.usable(["Ana", "Zoë", "", "A" * 40], set("AnaZo"), 32) == ["Ana"]


def test_model_names_are_the_served_models_samples(tiny_artifacts):
    names = bs.model_names(tiny_artifacts.dir, 300, seed=3)
    assert len(names) == 300 and len(set(names)) > 30 and all(names)
    assert names == bs.model_names(tiny_artifacts.dir, 300, seed=3)  # seeded


def test_the_markdown_states_targets_and_bound():
    row = {"typists": 1000, "names": "corpus", "keystrokes": 30000, "per_s": 1000.0, "sessions": 4000, "errors": 0,
           "statuses": {"200": 30000}, "p50_ms": 8.0, "p90_ms": 15.0, "p99_ms": 40.0, "max_ms": 70.0, "hit_rate": 0.95,
           "send_lag_p99_ms": 2.0, "cpu_ms_per_keystroke": {"frontend (Java)": 0.4, "workers charrnn_session": 0.3,
                                                             "load generator": 0.2, "machine busy": 1.0, "capacity": 2.0}}
    slow = {**row, "typists": 2000, "p99_ms": 80.0, "errors": 3, "statuses": {"200": 29997, "503": 3}}
    result = {"settings": {"seconds": 30, "warmup": 5, "jvm_warmup": 20, "connections": 64, "append": False},
              "model_config": {"maxWorkers": 1, "batchSize": 32, "maxBatchDelay": 5},
              "sessions_config": {"max": 100000, "state_cache_mib": 8, "answer_cache_mib": 32},
              "names": {"corpus": {"count": 20000, "distinct": 282, "mean_length": 7.1}},
              "rows": [row, slow],
              "open": {"opened": 10000, "open_seconds": 3.0, "open_statuses": {"200": 10000}, "held": 10000,
                       "append_statuses": {"200": 10000}, "rss_before_mib": 340.0, "rss_after_mib": 345.0,
                       "rss_growth_mib": 5.0, "bound": bs.stated_bound_mib({"state_cache_mib": 8, "answer_cache_mib": 32},
                                                                           10000)}}
    text = bs.markdown(result)
    lines = [line for line in text.splitlines() if line.startswith(("| 1,000", "| 2,000"))]
    assert lines[0].endswith("| yes |") and lines[1].endswith("| no |") and "503" in lines[1]
    assert "| 10,000 | 340 MiB | 345 MiB | +5.0 MiB |" in text and text.rstrip().count("| yes |") == 2
    assert "open loop" in text and "95%" in text
