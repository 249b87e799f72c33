"""The cluster's short form, for `make test`: one replica started through the image's start script
(deploy/replica.sh) behind the gateway started through its own (gateway.sh, HAProxy on the
rendered template), on the tiny model's archives. The one token, the routes, answers equal to the
handler in-process, the readiness endpoint, a hitless token rotation, and a graceful stop.
`make cluster-test` runs three replicas under load and kills one."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import requests

from core import contract
from deploy.cluster import Gateway, Replica, new_token
from deploy.reference import Reference, differences
from deploy.replica import READY
from serve.client import Client, ClientError
from serve.standin import SEQUENCE_ID
from tests.conftest import require_java
from tests.test_deploy import need

ROOT = Path(__file__).resolve().parent.parent
ONESHOT, SESSION = contract.MODEL, contract.SESSION_MODEL


@pytest.fixture(scope="module")
def store(tiny_artifacts, tiny_card, tmp_path_factory) -> Path:
    require_java("the cluster smoke test")
    need("haproxy", "the cluster smoke test")
    store = tmp_path_factory.mktemp("cluster") / "model_store"
    subprocess.run([sys.executable, "-m", "serve.archive", "--torchscript", str(tiny_artifacts.torchscript),
                    "--vocab", str(tiny_artifacts.vocab_json), "--greedy-graph",
                    str(tiny_artifacts.dir / contract.ONNX_GENERATE), "--card", str(tiny_card), "--out", str(store)],
                   cwd=ROOT, check=True, capture_output=True)
    return store


@pytest.fixture(scope="module")
def cluster(store, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster-run")
    replica = Replica("replica1", root / "replica1" / "run", store)
    gateway = Gateway(root / "gateway", [replica.server], poll_seconds=0.2)
    try:
        replica.start()
        replica.wait_ready(240)
        gateway.start()
        gateway.wait_status("replica1", "UP", 60)
        yield replica, gateway
    finally:
        gateway.stop()
        replica.stop()


@pytest.fixture(scope="module")
def reference(store):
    ref = Reference(store)
    yield ref
    ref.close()


def post(gateway: Gateway, model: str, body, token: str | None, headers: dict | None = None) -> requests.Response:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{gateway.url}/predictions/{model}", json=body, headers={**auth, **(headers or {})},
                         timeout=30)


def test_only_a_request_with_the_token_reaches_a_replica(cluster, reference):
    _, gw = cluster
    for token in (None, new_token(), gw.tokens[0][:-1]):
        r = post(gw, ONESHOT, {"prefix": "Ma"}, token)
        assert r.status_code == 401 and "token" in r.json()["error"] and r.headers["WWW-Authenticate"] == "Bearer"
    r = requests.post(f"{gw.url}/predictions/{ONESHOT}", json={"prefix": "Ma"}, timeout=30,
                      headers={"Authorization": f"Basic {gw.tokens[0]}"})
    assert r.status_code == 401
    for body in ({"prefix": "Ma"}, {"prefix": "", "num": 3}, {"prefix": "J", "num": 2, "temperature": 0.8, "seed": 3}):
        r = post(gw, ONESHOT, body, gw.tokens[0])
        status, want = reference.answer(ONESHOT, body)
        assert r.status_code == status == 200 and differences(r.json(), want) == [], body


def test_the_client_library_speaks_to_the_gateway_with_the_token(cluster, reference):
    _, gw = cluster
    names = Client(gw.url, token=gw.tokens[0]).generate("Ma", num=2)
    assert names == reference.answer(ONESHOT, {"prefix": "Ma", "num": 2})[1]["names"]
    with pytest.raises(ClientError) as refused:
        Client(gw.url, token=new_token()).generate("Ma")
    assert refused.value.status == 401


def test_a_session_keystroke_is_answered_as_a_fresh_decoding_of_its_text(cluster, reference):
    _, gw = cluster
    sid = None
    for n in range(1, 5):
        body = {"text": "Luca"[:n]}
        r = post(gw, SESSION, body, gw.tokens[0], {SEQUENCE_ID: sid} if sid else {})
        assert r.status_code == 200, r.text
        sid = r.headers.get(SEQUENCE_ID, sid)
        assert differences(r.json(), reference.answer(SESSION, body)[1]) == []


def test_only_the_two_model_paths_are_routed(cluster):
    _, gw = cluster
    auth = {"Authorization": f"Bearer {gw.tokens[0]}"}
    assert requests.get(f"{gw.url}/predictions/{ONESHOT}", headers=auth, timeout=30).status_code == 405
    for path in ("/models", "/ping", "/api-description", "/predictions/other", "/metrics"):
        r = requests.post(f"{gw.url}{path}", headers=auth, timeout=30)
        assert r.status_code == 404 and "unknown path" in r.json()["error"], path
    big = post(gw, ONESHOT, {"prefix": "x" * 20000}, gw.tokens[0])
    assert big.status_code == 413
    assert requests.get(f"{gw.url}/healthz", timeout=30).status_code == 200  # no token: the gateway's own


def test_the_replica_says_ready_only_on_its_readiness_path(cluster):
    replica, _ = cluster
    with urllib.request.urlopen(f"http://127.0.0.1:{replica.ready_port}{READY}", timeout=10) as resp:
        assert resp.status == 200 and resp.read() == b"READY\n"
    with pytest.raises(urllib.error.HTTPError) as other:
        urllib.request.urlopen(f"http://127.0.0.1:{replica.ready_port}/other", timeout=10)
    assert other.value.code == 404


def wait_for(gw: Gateway, token: str, status: int, timeout: float = 10) -> float:
    started = time.monotonic()
    while post(gw, ONESHOT, {"prefix": ""}, token).status_code != status:
        assert time.monotonic() - started < timeout, f"the gateway does not answer {status} for that token"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_token_rotation_reloads_the_gateway_in_place(cluster):
    _, gw = cluster
    old, nxt = gw.tokens[0], new_token()
    pid = (gw.root / "run" / "haproxy.pid").read_text().split()[0]
    gw.set_tokens([old, nxt])
    wait_for(gw, nxt, 200)
    assert post(gw, ONESHOT, {"prefix": ""}, old).status_code == 200
    gw.set_tokens([nxt])
    wait_for(gw, old, 401)
    assert post(gw, ONESHOT, {"prefix": ""}, nxt).status_code == 200
    gw.set_tokens([nxt, "too-short"])  # refused: the tokens in force stay
    time.sleep(1.5)
    assert post(gw, ONESHOT, {"prefix": ""}, nxt).status_code == 200
    assert "not usable: kept the previous tokens" in gw.log.read_text()
    assert (gw.root / "run" / "haproxy.pid").read_text().split()[0] == pid, "the master process was replaced"
    gw.set_tokens([nxt])


def test_the_gateway_refuses_to_start_on_a_bad_tokens_file(tmp_path):
    need("haproxy", "the gateway")
    gw = Gateway(tmp_path, [("127.0.0.1:9", 9)], tokens=["Bearer " + new_token()])
    with pytest.raises(Exception, match="exited"):
        gw.start(timeout=20)
    assert "must hold one token per line" in gw.log.read_text()


def test_sigterm_stops_the_replica_and_all_its_processes(cluster):
    replica, gw = cluster
    assert replica.stop(timeout=60) == (0, False)  # exit status 0, no process of its group left
    gw.wait_status("replica1", "DOWN", 10)
    assert post(gw, ONESHOT, {"prefix": ""}, gw.tokens[0]).status_code == 503
