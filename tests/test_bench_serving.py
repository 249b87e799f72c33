"""`make bench-serving` pieces that do not need TorchServe: the load generators against a fake
keep-alive HTTP server (wrk's closed loop, the open loop's scheduled-time latency, percentiles,
throughput, reconnects after `connection: close`, chunked bodies, sessions, the request budget),
the do-nothing archive, the sweep's points and choice rule, the archive patch, the PredictionTime
parsing, the targets and the section's Markdown. The real-server path is `make bench-serving`
(a TorchServe start plus the JVM warm-up is longer than these tests)."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
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

from bench import ceiling, load, serving, serving_report, serving_runs, serving_sweep, wrk
from serve import procfs
from tests.conftest import in_ci
from tests.fake_http import read_json_request

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
            # connections a client dropped mid-answer (wrk stops with requests in flight)
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in handlers:
                t.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
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
                request = await read_json_request(reader)
                if request is None:
                    return
                path, headers, body = request
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


# ---------------------------------------------------------------- wrk (closed loop)


@pytest.fixture
def wrk_binary():
    try:
        return wrk.available()
    except wrk.WrkMissing as exc:
        if in_ci():
            pytest.fail(f"{exc} (CI is set: .ci/run installs it)", pytrace=False)
        pytest.skip(str(exc))


def test_the_wrk_script_quotes_any_body_and_sends_the_token():
    text = wrk.script("/predictions/charrnn", [b'{"prefix": "]]"}', b'{"prefix": "A"}'], "t0k")
    assert '[=[{"prefix": "]]"}]=]' in text and '[[{"prefix": "A"}]]' in text
    assert '["Authorization"] = [[Bearer t0k]]' in text and "[[/predictions/charrnn]]" in text
    assert "Authorization" not in wrk.script("/x", [b"{}"], None)
    with pytest.raises(ValueError):
        wrk.script("/x", [], None)


def test_wrk_measures_throughput_latency_and_errors(wrk_binary):
    """Against a server that answers in 20 ms: wrk's closed loop cannot beat connections / 20 ms,
    every latency is at least the service time, the server saw what wrk counted (plus the
    requests still in flight when wrk stopped), and 400 answers are counted as errors."""
    delay, connections = 0.02, 4
    with FakeServer(delay=delay) as server:
        got = wrk.run(f"http://127.0.0.1:{server.port}/predictions/charrnn", [b'{"prefix": "A"}', b'{"prefix": "B"}'],
                      "token", connections=connections, seconds=2)
        seen = server.requests
    assert got.errors == 0 and got.requests > 20
    assert got.requests <= seen <= got.requests + connections
    assert got.p50_ms >= delay * 1e3 * 0.95 and got.p99_ms >= got.p50_ms
    assert got.req_per_s <= connections / delay * 1.05
    assert got.cpu_seconds > 0
    with FakeServer(close_every=4) as server:
        got = wrk.run(f"http://127.0.0.1:{server.port}/predictions/charrnn", [b'{"prefix": "A"}'], None,
                      connections=1, seconds=1)
    assert got.errors >= got.requests // 4 - 1 and got.errors > 0
    summary = got.summary()
    assert summary["req_per_s"] == pytest.approx((got.requests - got.errors) / got.seconds)


# ---------------------------------------------------------------- the open loop


def raws(server: FakeServer, prefixes: str = "ABC") -> list[bytes]:
    return [load.post("/predictions/charrnn", "127.0.0.1", server.port, "t", json.dumps({"prefix": c}).encode())
            for c in prefixes]


def test_open_loop_sends_at_the_rate_whatever_the_answers():
    """200 req/s for 1 s against a 30 ms service: every scheduled request is sent and answered,
    about 6 at a time (the pool grows past the 2 connections it starts with), each latency at
    least the service time."""
    with FakeServer(delay=0.03) as server:
        sample = load.open_loop("127.0.0.1", server.port, raws(server), rate=200, seconds=1.0, pool=2)
        assert server.requests == 200 and server.max_in_flight >= 4
    s = load.summarize_open(sample)
    assert s["scheduled"] == s["requests"] == 200 and s["errors"] == 0
    assert s["connections"] >= 4
    assert min(sample.service) >= 0.03 * 0.95 and s["p50_ms"] >= 30 * 0.95
    assert s["req_per_s"] == pytest.approx(200, rel=0.1)
    assert all(lag >= 0 for lag in sample.lags)


def test_open_loop_latency_counts_from_the_scheduled_time_no_coordinated_omission():
    """One connection and a 20 ms service can answer 50 req/s; 100 req/s are scheduled for 1 s.
    A closed-loop client would report 20 ms for every request; from the scheduled times, the
    requests that waited for the connection are charged their wait: the last waits about 1 s."""
    with FakeServer(delay=0.02) as server:
        sample = load.open_loop("127.0.0.1", server.port, raws(server), rate=100, seconds=1.0, pool=1,
                                max_connections=1)
    s = load.summarize_open(sample)
    assert s["requests"] == 100 and s["errors"] == 0 and s["connections"] == 1
    assert s["service_p50_ms"] < 60  # each answer itself is quick...
    assert s["max_ms"] >= 800 and s["p50_ms"] >= 300  # ...but they arrived faster than it could answer
    assert s["req_per_s"] <= 60


def test_open_loop_counts_refusals_and_closed_connections_as_errors():
    with FakeServer(close_every=5) as server:
        sample = load.open_loop("127.0.0.1", server.port, raws(server), rate=100, seconds=0.5, pool=2)
    s = load.summarize_open(sample)
    assert s["requests"] == 50 and s["errors"] == 10 and s["statuses"] == {"200": 40, "400": 10}
    assert s["error_bodies"] == {"400": '{"error": "bad"}'}


# ---------------------------------------------------------------- the do-nothing handler


def test_the_ceiling_store_holds_the_shipped_archive_and_a_do_nothing_one_with_its_settings(tmp_path):
    from serve.standin import StandInContext

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    make_mar(shipped / "charrnn.mar")
    store = ceiling.build_store(shipped, tmp_path / "store")
    assert sorted(p.name for p in store.iterdir()) == ["ceiling.mar", "charrnn.mar"]
    assert (store / "charrnn.mar").read_bytes() == (shipped / "charrnn.mar").read_bytes()
    assert ceiling.model_config(store / "ceiling.mar") == {"minWorkers": 2, "maxWorkers": 2, "batchSize": 8,
                                                          "maxBatchDelay": 5}
    with zipfile.ZipFile(store / "ceiling.mar") as z:
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
        assert manifest["model"]["handler"] == "ceiling_handler.py"
        (tmp_path / "unpacked.py").write_bytes(z.read("ceiling_handler.py"))
    spec = importlib.util.spec_from_file_location("unpacked_ceiling_handler", tmp_path / "unpacked.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.CeilingHandler()
    context = StandInContext(tmp_path)
    handler.initialize(context)
    out = context.run(handler, [b'{"prefix": "A"}', b"not even JSON", b""])
    assert [r.status for r in out] == [200] * 3
    assert all(json.loads(r.text) == {"names": ["Maria"], "logprobs": [-1.0]} for r in out)
    assert all(r.headers["content-type"] == "application/json" for r in out)


def test_the_shipped_config_check_names_every_difference(tmp_path, monkeypatch):
    make_mar(tmp_path / "charrnn.mar")
    source = {"minWorkers": 2, "maxWorkers": 2, "batchSize": 8, "maxBatchDelay": 5,
              "handler": {"mode": "generate", "threads": 1}}
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "charrnn.yaml").write_text(yaml.safe_dump(source))
    monkeypatch.setattr("serve.archive.CONFIG_DIR", config_dir)
    served = {m: {"minWorkers": 2, "maxWorkers": 2, "batchSize": 8, "maxBatchDelay": 5, "ready_workers": 2}
              for m in ("charrnn", "ceiling")}
    got = serving.shipped_config(tmp_path, served)
    assert got["same"] and got["differences"] == [] and got["settings"]["maxBatchDelay"] == 5
    served["ceiling"]["maxBatchDelay"] = 100
    source["batchSize"] = 4
    (config_dir / "charrnn.yaml").write_text(yaml.safe_dump(source))
    got = serving.shipped_config(tmp_path, served)
    assert not got["same"]
    assert "batchSize: serve/config 4, archive 8" in got["differences"]
    assert "maxBatchDelay: serve/config 5, TorchServe's ceiling 100" in got["differences"]


# ---------------------------------------------------------------- the section's shape


def fake_run(req_s, p50, p99, errors=0, statuses=None, model="charrnn"):
    return {"req_per_s": req_s, "p50_ms": p50, "p99_ms": p99, "errors": errors, "requests": 1000,
            "statuses": statuses or {"200": 1000 - errors}, "error_bodies": {},
            "cpu_ms_per_request": {"frontend (Java)": 0.5, f"workers {model}": 0.7, "load generator": 0.1,
                                   "machine busy": 1.6, "capacity": 2.0, "other processes": 0.3},
            "handler": {"batches": 10, "mean_batch": 4.0, "handler_ms_per_batch": 2.0, "handler_ms_per_request": 0.5},
            "cpu_bound_req_per_s": 1500.0}


def fake_open(req_s, p50, p99, errors=0, model="charrnn"):
    run = fake_run(req_s, p50, p99, errors, model=model)
    run.update(p90_ms=p50 * 1.5, max_ms=p99 * 2, service_p99_ms=p99 * 0.9, lag_p50_ms=0.5, lag_p99_ms=1.5)
    return run


def fake_result(delay=1, charrnn_p50=3.0, charrnn_rps=(900, 2500, 4000), errors=0):
    ceiling_rps = {1: 450, 8: 3500, 32: 4800}
    closed = {"do-nothing": {str(c): serving_runs.aggregate([fake_run(ceiling_rps[c], 2.0, 8.0, model="ceiling")] * 3)
                             for c in (1, 8, 32)},
              "charrnn": {str(c): serving_runs.aggregate([fake_run(r, charrnn_p50, 12.0 + i, errors if c == 32 else 0)
                                                          for i in range(3)])
                          for c, r in zip((1, 8, 32), charrnn_rps)}}
    opened = {label: {f"{pct:g}": dict(serving_runs.aggregate([fake_open(1000 * pct / 25, 3.0, 9.0, model=m)] * 3,
                                                               serving_runs.SUMMARIZED_OPEN), offered_req_per_s=pct * 40.0)
                      for pct in (25, 50, 80)}
              for label, m in (("do-nothing", "ceiling"), ("charrnn", "charrnn"))}
    config = {"minWorkers": 2, "maxWorkers": 2, "batchSize": 8, "maxBatchDelay": delay, "responseTimeout": 30}
    result = {"server": "TorchServe", "load_generators": {"closed": "wrk", "open": "bench/load.py"},
              "archive": {"path": "/x/charrnn.mar", "built": "2026-01-01 00:00", "model_config": config},
              "settings": {"clients": [1, 8, 32], "rates_percent": [25, 50, 80], "repeats": 3, "seconds_per_run": 8,
                           "warmup_seconds_per_run": 2, "jvm_warmup_seconds": 30},
              "main": {"closed": closed, "open": opened, "capacity_req_per_s": 4000.0, "served": {}},
              "shipped_config": {"same": True, "differences": [], "settings": config}}
    result["targets"] = serving_report.targets(result)
    return result


def test_targets_are_ratios_to_the_do_nothing_handler_from_the_same_run():
    met = {t["target"].split(":")[0]: t["met"] for t in fake_result()["targets"]}
    assert met == {"one client, greedy one-shot": True, "8 clients": False, "32 clients": True,
                   "the shipped config is the one measured (serve/config/charrnn.yaml = the archive's model-config.yaml = "
                   "what TorchServe serves, for both handlers)": True}
    got = {t["target"].split(":")[0]: t for t in fake_result(delay=5, charrnn_p50=5.0, errors=1)["targets"]}
    assert got["one client, greedy one-shot"]["met"] is False  # 2.5x
    assert "2.50×" in got["one client, greedy one-shot"]["measured"]
    assert got["32 clients"]["met"] is False and "3 errors" in got["32 clients"]["measured"]  # an error misses it
    assert not fake_result(delay=5)["targets"][0]["met"]  # within 1.5x, but not with a 1 ms batch window
    assert "0.71×" in got["8 clients"]["measured"]  # 2,500 / 3,500


def test_the_markdown_has_both_loops_the_targets_the_sessions_place_and_the_sweep():
    result = fake_result()
    rows = [serving_runs.aggregate([fake_run(900, 8, 20)] * 3), serving_runs.aggregate([fake_run(1100, 8, 18)] * 3)]
    for r, (w, b, d) in zip(rows, ((1, 1, 1), (2, 8, 1))):
        r["point"] = {"workers": w, "batch_size": b, "max_batch_delay_ms": d, "quiet_logs": False}
    result["sweep"] = {"clients": 8, "rows": rows, "best": serving_sweep.choose_best(rows), "rule": "r", "seconds": 60}
    text = serving_report.markdown(result)
    assert "| 8 | charrnn | 2,500 (2,500–2,500, n=3) | 3.00 (3.00–3.00, n=3) | 13.0 (12.0–14.0, n=3) | 0 of 3,000 | " \
           "0.71× req/s, 1.50× p50 |" in text
    assert "| 8 | do-nothing | 3,500 (3,500–3,500, n=3) |" in text
    assert "| 80 % (3,200) | charrnn | 3,200 (3,200–3,200, n=3) | 3.00 (3.00–3.00, n=3) | 9.0 (9.0–9.0, n=3) |" in text
    assert "### Open loop" in text and "### Closed loop" in text and "### Sessions" in text
    assert "0.71× (2,500 against 3,500 req/s), p99 13.0 ms, 0 errors — **missed**" in text
    assert "0.83× (4,000 against 4,800 req/s)" in text and text.count("**met**") == 3
    assert "[bench-sessions.md](bench-sessions.md)" in text  # the sessions section's own page
    assert "| 2 | 8 | 1 | 1,100 (1,100–1,100, n=3)" in text and "**best**" in text
    assert "| do-nothing | 32 | 4,800 | 2.000 | 1.600 | 0.500 | nan | 0.700 |" in text
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
