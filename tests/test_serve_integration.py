"""Against a real TorchServe: started by the fixture on free loopback ports in a temporary
directory, with the archives `make archive` builds (python -m serve.archive, the one-graph
decoder included) from a tiny freshly trained model, and always stopped.

Skipped (with the reason) only when Java 17 is missing, and never in CI (tests/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import torch

from core.contract import ONNX_GENERATE as GENERATE_FILE
from core.contract import SESSION_HEADER
from serve.client import Client, ClientError
from serve.config_properties import Ports, free_ports
from serve.engine import NBEST, ONNX_GRAPH, TORCH, Engine
from serve.handler import DECODER_HEADER
from serve.instance import running
from serve.server import ServerError, is_ready, launch, read_keys, start, stop
from serve.validation import GenerateRequest, SessionRequest
from serve.wire import DIGITS
from soak.corrupt import mar_without_member
from tests.conftest import assert_close, require_java

ROOT = Path(__file__).resolve().parents[1]

SEQUENCE_ID = SESSION_HEADER
JSON = {"Content-Type": "application/json"}


@dataclass
class Served:
    run_dir: Path
    ports: Ports

    @property
    def inference(self) -> str:
        return f"http://127.0.0.1:{self.ports.inference}"

    @property
    def management(self) -> str:
        return f"http://127.0.0.1:{self.ports.management}"

    def auth(self, kind: str = "inference") -> dict:
        return {"Authorization": f"Bearer {read_keys(self.run_dir)[kind]}"}

    def client(self) -> Client:
        return Client(self.inference, self.run_dir / "key_file.json", self.management)

    def post(self, model: str, data: bytes, headers: dict | None = None, timeout: float = 30, **kw) -> requests.Response:
        return requests.post(f"{self.inference}/predictions/{model}", data=data,
                             headers={**self.auth(), **JSON, **(headers or {})}, timeout=timeout, **kw)

    def worker_pids(self, model: str) -> list[int]:
        info = requests.get(f"{self.management}/models/{model}", headers=self.auth("management"), timeout=10).json()
        return sorted(w["pid"] for w in info[0]["workers"])


@pytest.fixture(scope="module")
def store(tiny_artifacts, tiny_card, tmp_path_factory) -> Path:
    """The model store as `make archive` writes it: its command line (Makefile), on the tiny model."""
    require_java("TorchServe integration tests")
    store = tmp_path_factory.mktemp("torchserve") / "model_store"
    subprocess.run([sys.executable, "-m", "serve.archive", "--torchscript", str(tiny_artifacts.torchscript),
                    "--vocab", str(tiny_artifacts.vocab_json), "--greedy-graph", str(tiny_artifacts.dir / GENERATE_FILE),
                    "--card", str(tiny_card), "--out", str(store)], cwd=ROOT, check=True, capture_output=True)
    return store


@pytest.fixture(scope="module")
def served(store, tmp_path_factory) -> Iterator[Served]:
    with running(store, run_dir=tmp_path_factory.mktemp("run"), timeout=180) as instance:
        yield Served(instance.run_dir, instance.ports)


@contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(tiny_artifacts) -> Engine:
    """The same engine in-process: what every served answer must equal."""
    return Engine.from_artifacts(tiny_artifacts.torchscript, tiny_artifacts.vocab_json)


def expected_names(engine: Engine, **fields) -> list[str]:
    with one_thread():
        return engine.generate([GenerateRequest(**fields)])[0]


def test_ready_means_every_worker_is_ready(served):
    for model in ("charrnn", "charrnn_session"):
        assert is_ready(served.run_dir, served.ports, model)
    assert len(served.worker_pids("charrnn")) == 2 and len(served.worker_pids("charrnn_session")) == 1
    ping = requests.get(f"{served.inference}/ping", headers=served.auth(), timeout=10)
    assert ping.status_code == 200 and ping.json()["status"] == "Healthy"


def test_requests_without_the_token_are_refused(served):
    url = f"{served.inference}/predictions/charrnn"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": served.auth("management")["Authorization"]}):
        r = requests.post(url, data=b'{"prefix": "A"}', headers={**JSON, **headers}, timeout=10)
        assert r.status_code == 400 and "InvalidKeyException" in r.text
    r = requests.get(f"{served.management}/models", timeout=10)
    assert r.status_code == 400 and "InvalidKeyException" in r.text
    # the model register API is off even with the management key
    r = requests.post(f"{served.management}/models", params={"url": "charrnn.mar"},
                      headers=served.auth("management"), timeout=10)
    assert r.status_code == 405


def test_greedy_and_sampled_requests(served, engine):
    client = served.client()
    assert client.generate("A") == expected_names(engine, prefix="A")
    assert client.generate("A") == client.generate("A")
    assert client.generate() == expected_names(engine)
    sampled = client.generate("Ma", num=4, temperature=0.9, top_k=5, seed=7)
    assert sampled == expected_names(engine, prefix="Ma", num=4, temperature=0.9, top_k=5, seed=7)
    assert sampled == client.generate("Ma", num=4, temperature=0.9, top_k=5, seed=7)
    r = served.post("charrnn", b'{"prefix": "Jo"}')
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")


def test_the_shipped_archive_answers_greedy_names_with_the_one_graph_decoder(served, engine):
    """The default path of `make archive`'s charrnn.mar in a real worker: greedy requests are
    decoded by charrnn_generate.onnx, sampled and streamed ones by the TorchScript loop, and the
    response header says which (the body is the same public API either way)."""
    for fields, decoder in (({"prefix": "Jo"}, ONNX_GRAPH), ({"num": 3, "max_length": 5, "search": "greedy"}, ONNX_GRAPH),
                            ({"prefix": "Ma", "temperature": 0.7, "seed": 3}, TORCH),
                            ({"prefix": "Ma", "stream": True}, TORCH)):
        r = served.post("charrnn", json.dumps(fields).encode())
        assert r.status_code == 200 and r.headers.get(DECODER_HEADER) == decoder, (fields, r.headers)
        answer = json.loads(r.text.splitlines()[-1])
        assert answer["names"] == expected_names(engine, **fields), fields
        assert set(answer) == ({"names", "logprobs", "done"} if fields.get("stream") else {"names", "logprobs"})
    r = served.post("charrnn", b'{"num": 0}')
    assert r.status_code == 400 and DECODER_HEADER not in r.headers


def test_50_concurrent_requests_are_all_correct(served, engine):
    letters = "ABCDEFGHIJKLMNOPRSTVYZ"
    reqs = []
    for i in range(50):
        fields = {"prefix": letters[i % len(letters)] if i % 5 else "", "num": 1 + i % 3}
        if i % 2:
            fields.update(temperature=0.5 + (i % 4) * 0.4, seed=1000 + i, top_k=i % 6)
        if i % 7 == 0:
            fields["max_length"] = 3 + i % 9
        reqs.append(fields)

    def call(fields):
        r = requests.post(f"{served.inference}/predictions/charrnn", data=json.dumps(fields).encode(),
                          headers={**served.auth(), **JSON}, timeout=60)
        return r.status_code, r.json(), r.headers.get(DECODER_HEADER)

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(call, reqs))
    assert all(status == 200 for status, _, _ in answers), answers
    got = [body["names"] for _, body, _ in answers]
    assert got == [expected_names(engine, **fields) for fields in reqs]
    # batches mixing both decoders: each request answered by its own
    assert [decoder for *_, decoder in answers] == [TORCH if f.get("temperature") else NBEST if f["num"] > 1
                                                    else ONNX_GRAPH for f in reqs]


def session_expected(engine: Engine, text: str) -> dict:
    with one_thread():
        return engine.session([(None, SessionRequest(text=text))])[0]


def assert_same_answer(got: dict, want: dict) -> None:
    assert got["text"] == want["text"] and got["completion"] == want["completion"]
    assert [c["char"] for c in got["next"]] == [c["char"] for c in want["next"]]
    # the worker's wave and this process's are different batches: by the parity rule
    assert_close([c["p"] for c in got["next"]], [c["p"] for c in want["next"]], want["text"], rounding=10.0**-DIGITS)


def test_a_session_of_several_requests_matches_in_process_decoding(served, engine):
    client = served.client()
    steps = [("type", "M"), ("append", "a"), ("append", "r"), ("type", "Mari"), ("append", "a C"), ("type", "Mar")]
    text = ""
    with client.session() as s:
        for kind, typed in steps:
            got = s.type(typed) if kind == "type" else s.append(typed)
            text = typed if kind == "type" else text + typed
            # the id the handler made travels back in the header and the body
            assert s.id and s.id.startswith("s-") and got["session"] == s.id
            assert_same_answer(got, session_expected(engine, text))
        sid = s.id
    # raw HTTP: `append` alone continues the text the worker holds; after the close it is a
    # 404 that says to send `text`, and `text` works again (no sequence to strand a request)
    r = served.post("charrnn_session", b'{"append": "a"}', {SEQUENCE_ID: sid}, timeout=10)
    assert r.status_code == 404 and "send the whole 'text'" in r.json()["error"]
    assert r.headers[SEQUENCE_ID] == sid
    r = served.post("charrnn_session", b'{"text": "Mar"}', {SEQUENCE_ID: sid}, timeout=10)
    assert r.status_code == 200 and r.json()["session"] == sid and r.headers[SEQUENCE_ID] == sid
    r = served.post("charrnn_session", b'{"append": "i"}', {SEQUENCE_ID: sid}, timeout=10)
    assert r.status_code == 200 and r.json()["text"] == "Mari"
    assert r.headers["X-CharRNN-Session-Cache"] in ("hit", "miss")


def test_interleaved_sessions_keep_their_own_state(served):
    client = served.client()
    a, b = client.session(), client.session()
    a.type("Jo")
    b.type("Ra")
    for ch in "ao":
        assert a.append(ch)["text"].startswith("Jo")
        assert b.append(ch)["text"].startswith("Ra")
    assert a.append("")["text"] == "Joao" and b.append("")["text"] == "Raao"
    a.close()
    b.close()


def test_many_more_sessions_than_the_old_cap_at_once(served, engine):
    """300 sessions typing at once from 24 threads (the old design refused the 25th open
    session with 429, and TorchServe's 33rd with 503): every request answered, correctly, and
    every session continued with `append` (its text held by the one worker)."""
    names = ["Maria", "João", "Lucas", "Ana", "Rafaela", "Heitor"]

    def one(i: int) -> list[tuple[int, dict | str]]:
        name = names[i % len(names)]
        r = served.post("charrnn_session", json.dumps({"text": name[:1]}).encode(), timeout=60)
        got = [(r.status_code, r.json() if r.status_code == 200 else r.text)]
        sid = r.headers.get(SEQUENCE_ID)
        for ch in name[1:]:
            r = served.post("charrnn_session", json.dumps({"append": ch}).encode(), {SEQUENCE_ID: sid}, timeout=60)
            got.append((r.status_code, r.json() if r.status_code == 200 else r.text))
        return got

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, range(300)))
    statuses = [status for answers in results for status, _ in answers]
    assert set(statuses) == {200}, sorted(set(statuses))
    wanted = {name[:k]: session_expected(engine, name[:k]) for name in names for k in range(1, len(name) + 1)}
    for answers in results:
        for _, got in answers:
            assert_same_answer(got, wanted[got["text"]])
    assert len({answers[0][1]["session"] for answers in results}) == 300


def test_a_streamed_response(served, engine):
    r = served.post("charrnn", b'{"prefix": "Ma", "num": 2, "temperature": 1.0, "seed": 11, "stream": true}',
                    stream=True)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    assert r.headers.get("transfer-encoding") == "chunked"
    lines = [json.loads(line) for line in r.iter_lines() if line]
    want = expected_names(engine, prefix="Ma", num=2, temperature=1.0, seed=11)
    assert {k: lines[-1][k] for k in ("names", "done")} == {"names": want, "done": True}
    assert_close(lines[-1]["logprobs"], engine.answer([GenerateRequest(prefix="Ma", num=2, temperature=1.0, seed=11)])[0]
                 .logprobs, "streamed log-probabilities", rounding=10.0**-DIGITS)
    assert ["".join(x["char"] for x in lines[:-1] if x["index"] == i) for i in range(2)] == want
    assert list(served.client().stream("Jo"))[-1]["names"] == expected_names(engine, prefix="Jo")


BAD = [
    (b"not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b"[1]", 400, "JSON object"),
    (b'{"prefix": 5}', 400, "'prefix' must be a string"),
    (b'{"num": true}', 400, "got a boolean"),
    (b'{"colour": "blue"}', 400, "unknown field(s) 'colour'"),
    (b'{"temperature": NaN}', 400, "NaN"),
    (b'{"temperature": Infinity}', 400, "Infinity"),
    (b'{"temperature": -1}', 400, "'temperature' must be between"),
    (b'{"num": 1000}', 400, "'num' must be between 1 and 64"),
    (b'{"max_length": 1000}', 400, "'max_length' must be between 1 and 64"),
    (json.dumps({"prefix": "A" * 40}).encode(), 400, "the limit is 32"),
    (json.dumps({"prefix": "Ö€"}, ensure_ascii=False).encode(), 400, "'Ö' (U+00D6), '€' (U+20AC)"),
    (b"[" * 5000, 400, "nested too deeply"),
    (b"\xff", 400, "UTF-8"),
]


def test_bad_inputs_get_4xx_and_the_server_stays_healthy(served):
    pids = served.worker_pids("charrnn")
    for raw, status, needle in BAD:
        r = served.post("charrnn", raw)
        assert r.status_code == status, (raw[:40], r.status_code, r.text)
        assert r.reason.isascii()
        assert needle in r.json()["error"], (raw[:40], r.text)
    # form-encoded instead of JSON, and a body over max_request_size (refused by the frontend)
    r = requests.post(f"{served.inference}/predictions/charrnn", data={"prefix": "A"}, headers=served.auth(), timeout=10)
    assert r.status_code == 400 and "application/json" in r.json()["error"]
    r = served.post("charrnn", b'{"prefix": "' + b"A" * 70000 + b'"}')
    assert r.status_code == 413
    # session model: bad input and an unknown session
    r = served.post("charrnn_session", b'{"text": "A", "append": "b"}')
    assert r.status_code == 400 and "not both" in r.json()["error"]
    r = served.post("charrnn_session", b'{"append": "b"}', {SEQUENCE_ID: "s-made-up"})
    assert r.status_code == 404 and r.headers.get(SEQUENCE_ID) == "s-made-up"
    # still healthy: same workers (none died and restarted), good requests answered
    assert served.worker_pids("charrnn") == pids
    assert requests.get(f"{served.inference}/ping", headers=served.auth(), timeout=10).json()["status"] == "Healthy"
    assert served.client().generate("A")


def test_the_client_reports_errors(served):
    with pytest.raises(ClientError) as info:
        served.client().generate("A", num=0)
    assert info.value.status == 400 and "'num'" in info.value.message


def every_backend_prints_the_same(served, artifacts, capsys, flag_sets) -> list[str]:
    """python -m tools.generate with each set of flags prints the same names from the server as
    from the eager, TorchScript and ONNX backends on `artifacts`; returns the server's flags."""
    from tools.generate import main

    server = ["--backend", "server", "--url", served.inference, "--key-file", str(served.run_dir / "key_file.json")]
    local = {"eager": artifacts.checkpoint, "torchscript": artifacts.torchscript, "onnx": artifacts.onnx}
    for flags in flag_sets:
        printed = {}
        with one_thread():
            for backend, path in local.items():
                main(["--backend", backend, "--model", str(path), *flags])
                printed[backend] = capsys.readouterr().out
        main([*server, *flags])
        printed["server"] = capsys.readouterr().out
        assert printed["server"].strip() and len(set(printed.values())) == 1, printed
    return server


def test_one_generate_command_line_for_every_backend(served, engine, tiny_artifacts, capsys):
    """python -m tools.generate prints the same names from the server as from the eager,
    TorchScript and ONNX backends for the same flags (greedy, seeded sampling, n-best);
    python -m serve.client is its alias, and --stream and --session print the server's JSON."""
    from tools.generate import main

    sampled = ["--prefix", "L", "-n", "3", "--temperature", "0.8", "--top-k", "5", "--seed", "7"]
    server = every_backend_prints_the_same(served, tiny_artifacts, capsys,
                                           (["--prefix", "A", "--prefix", "Ma"], sampled, ["-n", "3"]))
    alias = subprocess.run([sys.executable, "-m", "serve.client", *server[2:], *sampled], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, check=False)
    assert alias.returncode == 0 and alias.stdout.splitlines() == expected_names(
        engine, prefix="L", num=3, temperature=0.8, top_k=5, seed=7), alias.stderr
    main([*server, "--prefix", "Ma", "--stream"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["done"] and events[-1]["names"] == expected_names(engine, prefix="Ma")
    assert "".join(e["char"] for e in events[:-1]) == events[-1]["names"][0]
    main([*server, "--session", "L", "--session", "Lu"])
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["L", "Lu"]


def test_a_worker_refuses_an_archive_that_declares_a_missing_one_graph_decoder(store, tmp_path):
    """charrnn.mar without charrnn_generate.onnx (and without its checksums.json entry, so only
    the model config still declares it): the real worker refuses to initialise, with the reason,
    and start() stops there instead of serving the TorchScript loop in its place."""
    bad_store = tmp_path / "model_store"
    bad_store.mkdir()
    mar_without_member(store / "charrnn.mar", bad_store / "charrnn.mar", GENERATE_FILE, fix_checksums=True)
    run_dir = tmp_path / "run"
    try:
        with pytest.raises(ServerError) as info:
            # check=False: the worker itself must refuse (start's in-process check would refuse first)
            start(run_dir, bad_store, Ports(*free_ports(3)), models=("charrnn",), timeout=180, check=False)
    finally:
        still_running = stop(run_dir)
    assert not still_running  # start() stopped it
    message = str(info.value)
    assert "a charrnn worker died while loading the model: core.errors.ArtifactError" in message, message
    assert "declares the one-graph decoder (handler.one_graph: true)" in message
    assert "charrnn_generate.onnx is missing" in message


EXPIRY_MINUTES = 0.1  # token_expiration_min is a float in TorchServe 0.12 (minutes x 60 s): 6 s


def start_with_expiring_keys(run_dir: Path, store: Path) -> Served:
    """`make serve`'s config.properties plus token_expiration_min, serving charrnn.mar. Its keys
    expire while it starts, so readiness is asked with a management key renewed by the API key
    (which never expires); the inference key is left to expire."""
    ports = Ports(*free_ports(3))
    launch(run_dir, store, ports, ("charrnn",), properties={"token_expiration_min": EXPIRY_MINUTES})
    served = Served(run_dir, ports)
    deadline = time.monotonic() + 180  # a guard against a hang, not a speed check
    while time.monotonic() < deadline:
        try:
            requests.post(f"{served.management}/token", params={"type": "management"},
                          headers=served.auth("API"), timeout=10)
            if is_ready(run_dir, ports, "charrnn"):
                return served
        except (OSError, ValueError, KeyError, requests.RequestException):
            pass
        time.sleep(0.5)
    raise AssertionError(f"charrnn not READY: see {run_dir / 'logs'}")


def test_the_client_renews_an_expired_inference_key(store, engine, tmp_path):
    run_dir = tmp_path / "run"
    try:
        served = start_with_expiring_keys(run_dir, store)
        expired = read_keys(run_dir)["inference"]
        url = f"{served.inference}/predictions/charrnn"
        deadline = time.monotonic() + 10 * 60 * EXPIRY_MINUTES  # the key expires; not a speed check
        while (r := requests.post(url, data=b'{"prefix": "A"}', timeout=10,
                                  headers={"Authorization": f"Bearer {expired}", **JSON})).status_code == 200:
            assert time.monotonic() < deadline, "the inference key never expired"
            time.sleep(0.5)
        assert r.status_code == 400 and "InvalidKeyException" in r.text  # expired: refused as a wrong key
        client = served.client()
        assert client.generate("A") == expected_names(engine, prefix="A")  # renewed with the API key, retried
        renewed = read_keys(run_dir)["inference"]
        assert renewed != expired and client._key == renewed
    finally:
        stop(run_dir)


# ---------------------------------------------------------------- an ensemble, served as one model


@pytest.fixture(scope="module")
def ensemble_served(tiny_ensemble, ensemble_card, tmp_path_factory) -> Iterator[tuple[Served, Engine]]:
    """The tiny ensemble's archives (`make archive`'s command line, as `store`) in a TorchServe
    of its own, and its engine in-process: the same handler, with no special case."""
    require_java("TorchServe integration tests")
    store = tmp_path_factory.mktemp("ensemble-torchserve") / "model_store"
    subprocess.run([sys.executable, "-m", "serve.archive", "--torchscript", str(tiny_ensemble.torchscript),
                    "--vocab", str(tiny_ensemble.vocab_json), "--greedy-graph", str(tiny_ensemble.dir / GENERATE_FILE),
                    "--card", str(ensemble_card), "--out", str(store)], cwd=ROOT, check=True, capture_output=True)
    with running(store, run_dir=tmp_path_factory.mktemp("ensemble-run"), timeout=180) as instance:
        yield Served(instance.run_dir, instance.ports), Engine.from_artifacts(tiny_ensemble.torchscript,
                                                                                tiny_ensemble.vocab_json)


def test_an_ensemble_is_served_by_every_decoder_and_equals_every_backend(ensemble_served, tiny_ensemble, capsys):
    """A real worker serves the ensemble's charrnn.mar: greedy requests on its one-graph decoder,
    n-best lists, sampled and streamed requests on the TorchScript loop, each the in-process
    engine's names; and tools.generate prints the same names from the server as from the eager,
    TorchScript and ONNX backends of the same ensemble."""
    served, engine = ensemble_served
    for fields, decoder in (({"prefix": "Jo"}, ONNX_GRAPH), ({"num": 3, "max_length": 5, "search": "greedy"}, ONNX_GRAPH),
                            ({"prefix": "Ma", "num": 4}, NBEST), ({"prefix": "Ma", "temperature": 0.7, "seed": 3}, TORCH),
                            ({"prefix": "A", "num": 2, "temperature": 1.0, "seed": 11, "stream": True}, TORCH)):
        r = served.post("charrnn", json.dumps(fields).encode())
        assert r.status_code == 200 and r.headers.get(DECODER_HEADER) == decoder, (fields, r.headers)
        assert json.loads(r.text.splitlines()[-1])["names"] == expected_names(engine, **fields), fields
    every_backend_prints_the_same(served, tiny_ensemble, capsys, (
        ["--prefix", "A", "--prefix", "Ma"], ["--prefix", "L", "-n", "3", "--temperature", "0.8", "--seed", "7"],
        ["-n", "3"]))


def test_an_ensemble_session_matches_in_process_decoding(ensemble_served):
    served, engine = ensemble_served
    text = ""
    with served.client().session() as s:
        for kind, typed in (("type", "M"), ("append", "a"), ("append", "r"), ("type", "Jo")):
            got = s.type(typed) if kind == "type" else s.append(typed)
            text = typed if kind == "type" else text + typed
            assert_same_answer(got, session_expected(engine, text))
