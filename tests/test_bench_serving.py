"""`make bench-serving` pieces that do not need TorchServe: the load generator against a fake
keep-alive HTTP server (percentiles, throughput, reconnects after `connection: close`, chunked
bodies, sessions, the request budget), the sweep's points and choice rule, the archive patch,
the PredictionTime parsing and the section's Markdown. The real-server path is
`make bench-serving` (a TorchServe start plus the JVM warm-up is longer than these tests)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import zipfile
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Self

import numpy as np
import pytest
import yaml

from bench import load, serving_report, serving_runs, serving_sweep
from serve import procfs

# ---------------------------------------------------------------- a fake server


class FakeServer:
    """Keep-alive HTTP/1.1 on a free loopback port, in its own thread and event loop.

    /predictions/charrnn: 200 {"names": [...]} after `delay` s; every `close_every`-th request
    gets 400 with `connection: close` and the connection is closed (as TorchServe does).
    /predictions/charrnn_session: a request without ts_request_sequence_id opens a session (the
    id comes back in that header); follow-ups must carry a known id; {"close": true} ends it.
    """

    def __init__(self, delay: float = 0.0, close_every: int = 0, chunked: bool = False,
                 on_request: Callable[[], None] | None = None):
        self.delay, self.close_every, self.chunked, self.on_request = delay, close_every, chunked, on_request
        self.connections = self.requests = 0
        self.in_flight = self.max_in_flight = 0  # requests received and not yet answered
        self.sessions: dict[str, list[str]] = {}
        self.closed_sessions: list[list[str]] = []
        self.bad_session_requests = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        async def shutdown():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def _answer(self, status: int, body: bytes, headers: dict | None = None, close: bool = False) -> bytes:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if close:
            extra += "connection: close\r\n"
        if self.chunked and status == 200:
            half = len(body) // 2
            payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:half], body[half:]) if c) + b"0\r\n\r\n"
            return f"HTTP/1.1 {status} OK\r\ntransfer-encoding: chunked\r\n{extra}\r\n".encode() + payload
        return f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode().split("\r\n")
                path = lines[0].split()[1]
                headers = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = json.loads(await reader.readexactly(int(headers["Content-Length"])))
                self.requests += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.in_flight -= 1
                if self.on_request is not None:
                    self.on_request()
                if path == "/predictions/charrnn_session":
                    writer.write(self._session(headers, body))
                elif self.close_every and self.requests % self.close_every == 0:
                    writer.write(self._answer(400, b'{"error": "bad"}', close=True))
                    await writer.drain()
                    return
                else:
                    writer.write(self._answer(200, json.dumps({"names": [body["prefix"] + "x"]}).encode()))
                await writer.drain()
        finally:
            writer.close()

    def _session(self, headers: dict, body: dict) -> bytes:
        sid = headers.get("ts_request_sequence_id")
        if sid is None:
            sid = f"ts-seq-{len(self.sessions) + len(self.closed_sessions)}"
            self.sessions[sid] = []
        elif sid not in self.sessions:
            self.bad_session_requests += 1
            return self._answer(404, b'{"error": "unknown session"}')
        if body.get("close"):
            self.closed_sessions.append(self.sessions.pop(sid))
            return self._answer(200, json.dumps({"session": sid, "closed": True}).encode(),
                                {"ts_request_sequence_id": sid})
        self.sessions[sid].append(body["append"])
        text = "".join(self.sessions[sid])
        return self._answer(200, json.dumps({"session": sid, "text": text}).encode(), {"ts_request_sequence_id": sid})


def greedy(server: FakeServer, prefixes: str = "ABC") -> load.Workload:
    return load.one_shot("/predictions/charrnn", "127.0.0.1", server.port, "token",
                         [json.dumps({"prefix": c}).encode() for c in prefixes])


# ---------------------------------------------------------------- percentiles and summaries


def test_percentile_is_numpys_linear_interpolation():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 10, 101, 1000):
        values = rng.exponential(size=n).tolist()
        for q in (0, 1, 25, 50, 90, 99, 100):
            assert load.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    assert load.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    with pytest.raises(ValueError):
        load.percentile([], 50)


def test_summary_of_a_controlled_sample():
    # 100 requests in 0.5 s: 98 ok taking 1..98 ms, 2 errors of 200 ms
    sample = load.Sample(clients=4, seconds=0.5, latencies=[i / 1000 for i in range(1, 99)] + [0.2, 0.2], ok=98,
                         errors=2, client_cpu_seconds=0.01)
    sample.statuses.update({200: 98, 503: 2})
    s = load.summarize(sample)
    assert s["requests"] == 100 and s["errors"] == 2
    assert s["req_per_s"] == pytest.approx(196.0)  # successful answers per second
    assert s["p50_ms"] == pytest.approx(50.5)
    assert s["p99_ms"] == pytest.approx(float(np.percentile(sample.latencies, 99)) * 1e3)
    assert s["client_cpu_ms_per_request"] == pytest.approx(0.1)
    assert s["statuses"] == {"200": 98, "503": 2}


# ---------------------------------------------------------------- the load generator


def test_keep_alive_clients_share_a_bounded_budget():
    with FakeServer() as server:
        sample = load.run("127.0.0.1", server.port, greedy(server), clients=4, requests=300, warmup=20)
        assert server.requests == 320 and server.connections == 4  # one connection per client, kept alive
    assert len(sample.latencies) == 300 and sample.ok == 300 and sample.errors == 0
    assert sample.connects == 0 and not sample.cut_short
    assert all(x > 0 for x in sample.latencies)


def test_throughput_and_latency_against_a_known_service_time():
    """Bounds that hold on any machine (a slow one only moves away from them) and the clients'
    overlap, counted by the server: no speed floor (speed is for `make bench-serving`)."""
    delay, clients = 0.05, 4
    with FakeServer(delay=delay) as server:
        sample = load.run("127.0.0.1", server.port, greedy(server), clients=clients, requests=40)
        overlap = server.max_in_flight
    s = load.summarize(sample)
    assert overlap == clients  # every client had a request waiting on the server at once
    assert min(sample.latencies) >= delay * 0.95
    assert s["req_per_s"] <= clients / delay * 1.05  # cannot beat the service time
    assert s["req_per_s"] == pytest.approx(sample.ok / sample.seconds)
    assert s["p50_ms"] >= delay * 1e3 * 0.95


def test_a_closed_connection_is_reopened_and_counted_as_an_error():
    with FakeServer(close_every=5) as server:
        sample = load.run("127.0.0.1", server.port, greedy(server), clients=2, requests=100)
    assert len(sample.latencies) == 100
    assert sample.errors == 20 and sample.ok == 80
    assert dict(sample.statuses) == {200: 80, 400: 20}
    assert sample.connects in (19, 20)  # a reconnect after each close (but the last, if nothing follows)
    assert sample.error_bodies == {"400": '{"error": "bad"}'}


def test_chunked_bodies_are_read_whole():
    with FakeServer(chunked=True) as server:
        sample = load.run("127.0.0.1", server.port, greedy(server), clients=3, requests=30)
    assert sample.ok == 30 and sample.errors == 0


def test_sessions_type_names_character_by_character_then_close():
    with FakeServer() as server:
        workload = load.sessions("/predictions/charrnn_session", "127.0.0.1", server.port, "t", ["Ana", "Júlia"])
        sample = load.run("127.0.0.1", server.port, workload, clients=2, requests=40)
        closed = list(server.closed_sessions)
        assert server.bad_session_requests == 0 and not server.sessions  # every session closed
    assert sample.errors == 0 and sample.ok == len(sample.latencies)
    assert 40 <= len(sample.latencies) < 40 + 6  # a session takes its whole script from the budget
    assert closed and all("".join(chars) in ("Ana", "Júlia") for chars in closed)


def test_a_run_stops_at_its_time_cap(monkeypatch):
    """No request starts once max_seconds of the run's clock are over: here a clock each answer
    moves on by 10 ms. One client (so the count is exact): a request at 0 s and one after each
    answer up to 0.3 s (30): 31, all answered, and nothing sent after that."""
    answered = []
    monkeypatch.setattr(load, "time", SimpleNamespace(perf_counter=lambda: len(answered) / 100,
                                                      process_time=time.process_time))
    with FakeServer(on_request=lambda: answered.append(1)) as server:
        sample = load.run("127.0.0.1", server.port, greedy(server), clients=1, requests=100_000, max_seconds=0.3)
        sent = server.requests
    assert sample.cut_short and len(sample.latencies) == sent == 31


def test_the_measured_hook_wraps_only_the_measured_phase():
    events = []

    class Hook:
        def __enter__(self):
            events.append(("enter", server.requests))

        def __exit__(self, *exc):
            events.append(("exit", server.requests))

    with FakeServer() as server:
        load.run("127.0.0.1", server.port, greedy(server), clients=2, requests=50, warmup=10, measured=Hook)
    assert events == [("enter", 10), ("exit", 60)]


# ---------------------------------------------------------------- the sweep


def test_sweep_points_parse_and_refuse_nonsense():
    points = serving_sweep.parse_points("1:1:1, 2:8:5:quiet,best:quiet")
    assert points == [serving_sweep.Point(1, 1, 1), serving_sweep.Point(2, 8, 5, True), serving_sweep.BEST_QUIET]
    assert [p.label for p in points] == ["1:1:1", "2:8:5:quiet", "best:quiet"]
    assert serving_sweep.parse_points("none") == [] and serving_sweep.parse_points("") == []
    assert len(serving_sweep.parse_points(serving_sweep.DEFAULT_SWEEP)) >= 6
    for bad in ("2:8", "2:8:0", "0:8:5", "2:8:5:loud", "a:b:c"):
        with pytest.raises(ValueError):
            serving_sweep.parse_points(bad)


def row(workers, batch, delay, req_s, p99, errors=0, quiet=False):
    return {"point": {"workers": workers, "batch_size": batch, "max_batch_delay_ms": delay, "quiet_logs": quiet},
            "req_per_s": {"median": req_s}, "p99_ms": {"median": p99}, "errors": errors}


def test_the_choice_is_the_most_req_per_s_within_p99_and_without_errors():
    rows = [row(1, 1, 1, 450, 12),
            row(2, 8, 5, 1064, 17),
            row(2, 8, 1, 1200, 31),          # too slow at p99
            row(2, 4, 2, 1150, 20, errors=1),  # an error in some repetition
            row(2, 4, 1, 1300, 15, quiet=True),  # not the shipped logging
            row(3, 8, 2, 1064, 16)]          # ties on req/s: the lower p99 wins
    assert serving_sweep.choose_best(rows) == 5
    assert serving_sweep.choose_best(rows[:2]) == 1
    assert serving_sweep.choose_best([row(2, 8, 1, 1200, 31)]) is None
    assert serving_sweep.choose_best([row(2, 8, 1, 1200, 31)], float("inf")) == 0


def make_mar(path, with_checksums=True):
    config = yaml.safe_dump({"minWorkers": 2, "maxWorkers": 2, "batchSize": 8, "maxBatchDelay": 5,
                             "handler": {"mode": "generate", "threads": 1}}).encode()
    files = {"model-config.yaml": config, "handler.py": b"# handler\n", "vocab.json": b'{"symbols": ["<s>", "A"]}'}
    if with_checksums:
        files["checksums.json"] = json.dumps({"format": "x", "files": {
            n: hashlib.sha256(d).hexdigest() for n, d in files.items()}}).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


@pytest.mark.parametrize("with_checksums", [True, False])
def test_patch_archive_sets_the_point_and_keeps_the_checksums_true(tmp_path, with_checksums):
    make_mar(tmp_path / "a.mar", with_checksums)
    serving_sweep.patch_archive(tmp_path / "a.mar", tmp_path / "b.mar", serving_sweep.Point(1, 4, 2))
    config = serving_sweep.read_model_config(tmp_path / "b.mar")
    assert (config["minWorkers"], config["maxWorkers"], config["batchSize"], config["maxBatchDelay"]) == (1, 1, 4, 2)
    assert config["handler"] == {"mode": "generate", "threads": 1}
    with zipfile.ZipFile(tmp_path / "a.mar") as a, zipfile.ZipFile(tmp_path / "b.mar") as b:
        assert a.namelist() == b.namelist() and a.read("handler.py") == b.read("handler.py")
        if with_checksums:
            sums = json.loads(b.read("checksums.json"))["files"]
            for name in b.namelist():
                if name != "checksums.json":
                    assert sums[name] == hashlib.sha256(b.read(name)).hexdigest(), name


def test_prediction_time_lines_give_batches_and_handler_time():
    def stamp(t):
        return datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S,%f")[:-3]

    t0 = time.time()
    lines = [(f"{stamp(t0 + 0.1)} - PredictionTime.ms:4.0|#ModelName:charrnn,Level:Model|#hostname:vm,"
             "requestID:a,b,c,d,timestamp:1"),
             (f"{stamp(t0 + 0.2)} - PredictionTime.ms:2.0|#ModelName:charrnn,Level:Model|#hostname:vm,"
             "requestID:e,f,timestamp:1"),
             (f"{stamp(t0 + 0.2)} - PredictionTime.ms:9.0|#ModelName:charrnn_session,Level:Model|#hostname:vm,"
             "requestID:g,timestamp:1"),
             (f"{stamp(t0 + 5)} - PredictionTime.ms:7.0|#ModelName:charrnn,Level:Model|#hostname:vm,"
             "requestID:h,timestamp:1"),
             "garbage line"]
    batches = serving_runs.parse_prediction_lines(lines, "charrnn")
    assert [(n, ms) for _, n, ms in batches] == [(4, 4.0), (2, 2.0), (1, 7.0)]
    stats = serving_runs.handler_stats(batches, procfs.Window(t0, t0 + 1))
    assert stats == {"batches": 2, "mean_batch": 3.0, "handler_ms_per_batch": 3.0, "handler_ms_per_request": 1.0}
    assert serving_runs.handler_stats(batches, procfs.Window(t0 + 10, t0 + 11)) == {"batches": 0}


# ---------------------------------------------------------------- the section's shape


def fake_run(req_s, p50, p99, errors=0, statuses=None):
    return {"req_per_s": req_s, "p50_ms": p50, "p99_ms": p99, "errors": errors, "requests": 1000,
            "statuses": statuses or {"200": 1000 - errors}, "error_bodies": {},
            "cpu_ms_per_request": {"frontend (Java)": 0.5, "workers charrnn": 0.7, "load generator": 0.1,
                                   "machine busy": 1.6, "capacity": 2.0, "other processes": 0.3},
            "handler": {"batches": 10, "mean_batch": 4.0, "handler_ms_per_batch": 2.0, "handler_ms_per_request": 0.5},
            "cpu_bound_req_per_s": 1500.0}


def test_the_markdown_has_the_table_the_target_and_the_sweep():
    main = {"greedy": {str(c): serving_runs.aggregate([fake_run(1000 + i, 7.0, 17.0 + i) for i in range(3)])
                       for c in (1, 8, 32)},
            "session": {str(c): serving_runs.aggregate([fake_run(800, 9.0, 30.0, errors=5,
                                                            statuses={"200": 995, "429": 5})] * 3)
                        for c in (1, 8, 32)}}
    rows = [serving_runs.aggregate([fake_run(900, 8, 20)] * 3), serving_runs.aggregate([fake_run(1100, 8, 18)] * 3)]
    for r, (w, b, d) in zip(rows, ((1, 1, 1), (2, 8, 5))):
        r["point"] = {"workers": w, "batch_size": b, "max_batch_delay_ms": d, "quiet_logs": False}
    result = {"server": "TorchServe", "load_generator": "bench/load.py",
              "archives": {e: {"path": f"/x/{m}.mar", "built": "2026-01-01 00:00",
                               "model_config": {"minWorkers": 2, "batchSize": 8, "maxBatchDelay": 5}}
                           for e, m in serving_runs.MODELS.items()},
              "settings": {"clients": [1, 8, 32], "endpoints": ["greedy", "session"], "repeats": 3,
                           "requests_per_run": 1000, "warmup_per_run": 200, "max_seconds_per_run": 8,
                           "jvm_warmup_requests": 10000, "jvm_warmup_max_seconds": 20},
              "main": main,
              "sweep": {"clients": 8, "rows": rows, "best": serving_sweep.choose_best(rows), "rule": "r", "seconds": 60}}
    text = serving_report.markdown(result)
    assert "| one-shot greedy | 8 | 1,001 (1,000–1,002, n=3) | 7.0 (7.0–7.0, n=3) | 18.0 (17.0–19.0, n=3) | 0 of 3,000 |" in text
    assert "15 of 3,000 (429: 15)" in text and "429: a session refused" in text
    assert "**met**" in text
    assert "| 2 | 8 | 5 | 1,100 (1,100–1,100, n=3)" in text and "**best**" in text
    assert "Best: 2 workers, batchSize 8, maxBatchDelay 5 ms" in text
    assert "| one-shot greedy | 8 | 1,001 | 2.00 | 1.60 | 0.50 | nan | 0.70 | 0.10 | 0.30 | 1,500 | 4.0 | 2.00 | 0.50 |" in text
    json.dumps(result)  # what bench.json stores


def test_the_cpu_meter_counts_this_process_as_the_load_generator():
    window = procfs.Window()
    with procfs.cpu_meter({"nobody": [2**22 + 12345]}, window, jvm=2**22 + 12345)():
        deadline = time.process_time() + 0.2
        while time.process_time() < deadline:
            pass
    cpu = window.cpu
    assert cpu["load generator"] >= 0.1 and cpu["nobody"] == 0 and cpu["of which JIT"] == 0
    assert cpu["capacity"] >= 0.2 and cpu["machine busy"] >= 0.1 and window.end >= window.start
    assert procfs.jit_ticks(2**22 + 12345) == 0 and procfs.process_ticks(2**22 + 12345) == 0
