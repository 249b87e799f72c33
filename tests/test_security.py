"""Security: the served configuration (against a real TorchServe: loopback-only sockets, token
authorization, no model registration by URL, allowed_urls restricted to the model store), and
checkpoints loaded only with weights_only=True (a crafted pickle is refused, never run).
"""

from __future__ import annotations

import ast
import ipaddress
import pickle
from pathlib import Path

import pytest
import requests
import torch

from model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from serve.config_properties import Ports
from serve.instance import running
from serve.procfs import is_alive, process_ticks
from serve.server import read_keys, start, stop
from tests.conftest import require_java
from tests.test_serve_integration import Served, free_ports

ROOT = Path(__file__).resolve().parents[1]
PROJECT_DIRS = ("data", "model", "export", "serve", "evaluation", "bench", "soak", "tests")


# ---------------------------------------------------------------- weights_only


def project_sources() -> list[Path]:
    return sorted(p for d in PROJECT_DIRS for p in (ROOT / d).rglob("*.py"))


def test_every_torch_load_passes_weights_only_true():
    offenders, calls = [], 0
    for path in project_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(getattr(func, "value", None), "id", "")
            if name == "load" and owner == "torch":
                calls += 1
                flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            elif owner == "pickle" and name in ("load", "loads") and "tests" not in path.parts:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} (pickle.{name})")
    assert calls and not offenders, offenders


class Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_with_a_pickled_object_is_refused_and_never_run(tiny_artifacts, tmp_path):
    marker = tmp_path / "code-ran"
    good = torch.load(tiny_artifacts.checkpoint, map_location="cpu", weights_only=True)
    # the real format, one pickled object hidden in its metrics
    evil = tmp_path / "evil.pt"
    torch.save({**good, "metrics": {"note": Payload(marker)}}, evil)
    with pytest.raises(CheckpointError, match=f"{evil}: refused: the checkpoint holds objects"):
        load_checkpoint(evil)
    # torch's legacy (non-zip) format and a bare pickle: refused before unpickling
    legacy = tmp_path / "legacy.pt"
    torch.save({**good, "x": Payload(marker)}, legacy, _use_new_zipfile_serialization=False)
    bare = tmp_path / "bare.pt"
    bare.write_bytes(pickle.dumps(Payload(marker)))
    for path in (legacy, bare):
        with pytest.raises(CheckpointError, match=str(path)):
            read_checkpoint(path)
    # the export refuses it too, and writes nothing
    from export.pipeline import export_all

    with pytest.raises(CheckpointError, match="refused"):
        export_all(evil, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the served configuration


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on `port` (from /proc/net/tcp and tcp6; an
    IPv4-mapped IPv6 address, as Java binds, is given as its IPv4 address)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if len(raw) == 4:
                found.add(str(ipaddress.IPv4Address(raw[::-1])))
            else:  # four little-endian 32-bit words
                ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
                found.add(str(ip.ipv4_mapped or ip))
    return found


def start_bare(run_dir: Path, store: Path, *, model_api: bool) -> Served:
    """TorchServe with the served config.properties (render_config, as `make serve` writes it)
    but no models (nothing to load: it starts in seconds); optionally the model API switched ON."""
    ports = Ports(*free_ports(3))
    # no models: start returns once the frontend says its servers are bound
    start(run_dir, store, ports, models=(), timeout=180, properties={"enable_model_api": True} if model_api else None)
    config = (run_dir / "config.properties").read_text()
    assert ("enable_model_api=true" in config) == model_api and ("enable_model_api=false" in config) != model_api
    return Served(run_dir, ports)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A model store holding an archive name (its content is never read by these tests)."""
    require_java("the served-configuration tests")
    d = tmp_path_factory.mktemp("store")
    (d / "charrnn.mar").write_bytes(b"not read")
    return d


def _bare_server(store, tmp_path_factory, model_api: bool):
    run_dir = tmp_path_factory.mktemp("model_api_on" if model_api else "served_config")
    try:
        yield start_bare(run_dir, store, model_api=model_api)
    finally:
        stop(run_dir)


@pytest.fixture(scope="module")
def served_config(store, tmp_path_factory):
    yield from _bare_server(store, tmp_path_factory, model_api=False)


@pytest.fixture(scope="module")
def model_api_on(store, tmp_path_factory):
    yield from _bare_server(store, tmp_path_factory, model_api=True)


@pytest.fixture(params=["served_config", "model_api_on"])
def server(request) -> Served:
    return request.getfixturevalue(request.param)


def test_running_always_stops_its_instance_and_removes_its_folder(store):
    """serve.instance.running (the bench's and the soak's TorchServe): the instance it yields is
    up, its process tree is what CPU accounting reads, and it is stopped and its temporary
    folder removed even when the body fails."""
    with pytest.raises(RuntimeError, match="the body failed"), \
            running(store, models=(), timeout=180, check=False) as instance:
        pid, root = instance.java_pid, instance.run_dir.parent
        assert instance.key("management") and instance.keys == read_keys(instance.run_dir)
        assert instance.process_groups() == {"frontend (Java)": [pid]} and process_ticks(pid) > 0
        assert is_alive(pid) and root.is_dir()
        raise RuntimeError("the body failed")
    assert not is_alive(pid) and not root.exists()


def test_torchserve_listens_on_loopback_only(server):
    """HTTP inference, management and metrics, and the gRPC APIs TorchServe always starts (on
    ports of the instance's own, so two instances never collide on 7070/7071)."""
    served = server
    props = dict(line.split("=", 1) for line in (served.run_dir / "config.properties").read_text().splitlines()
                 if line and not line.startswith("#"))
    assert props["disable_token_authorization"] == "false"
    assert props["allowed_urls"].startswith("file://") and props["allowed_urls"].endswith("/[^/]*[.]mar")
    grpc = [int(props["grpc_inference_port"]), int(props["grpc_management_port"])]
    assert not {7070, 7071} & set(grpc)
    # start_bare returned once TorchServe said it started: every API, gRPC included, is bound
    for port in (served.ports.inference, served.ports.management, served.ports.metrics, *grpc):
        assert listening_addresses(port) == {"127.0.0.1"}, (port, listening_addresses(port))


def test_every_api_needs_its_token(server):
    served = server
    inference, management = f"{served.inference}/predictions/charrnn", f"{served.management}/models"
    for url, method in ((inference, requests.post), (management, requests.get), (management, requests.post),
                        (f"{served.inference}/ping", requests.get)):
        for headers in ({}, {"Authorization": "Bearer not-the-key"}):
            r = method(url, data=b'{"prefix": "A"}', headers={"Content-Type": "application/json", **headers},
                       timeout=10)
            assert r.status_code == 400 and "InvalidKeyException" in r.text, (url, headers, r.status_code)
    # the inference key does not open the management API
    r = requests.get(management, headers=served.auth("inference"), timeout=10)
    assert r.status_code == 400 and "InvalidKeyException" in r.text


def test_no_model_can_be_registered_by_url(served_config, store):
    served = served_config
    auth = served.auth("management")
    for url in ("http://127.0.0.1:1/evil.mar", "https://example.invalid/evil.mar", "file:///etc/passwd",
                f"file://{store}/charrnn.mar", "charrnn.mar"):
        r = requests.post(f"{served.management}/models", params={"url": url, "model_name": "evil"},
                          headers=auth, timeout=10)
        assert r.status_code == 405, (url, r.status_code, r.text[:200])
    assert requests.delete(f"{served.management}/models/charrnn", headers=auth, timeout=10).status_code == 405
    assert requests.get(f"{served.management}/models", headers=auth, timeout=10).json()["models"] == []


def test_allowed_urls_admits_only_archives_of_the_model_store(model_api_on, store, tmp_path):
    """If the model API were ever switched on, allowed_urls alone still refuses any URL outside
    the model store (the ShellTorch SSRF, CVE-2023-43654, went through this path)."""
    served = model_api_on
    auth = served.auth("management")
    outside = tmp_path / "evil.mar"
    outside.write_bytes(b"not read")
    for url in ("http://127.0.0.1:1/evil.mar", "https://example.invalid/charrnn.mar", f"file://{outside}",
                f"file://{store}/../{store.name}/charrnn.mar", "file:///etc/passwd"):
        r = requests.post(f"{served.management}/models", params={"url": url, "model_name": "evil"},
                          headers=auth, timeout=30)
        assert r.status_code == 404, (url, r.status_code, r.text[:200])
        message = r.json()["message"]
        assert "does not match any allowed URL" in message or "Relative path is not allowed" in message, message
    # an archive of the store passes the URL check (the pattern does not refuse everything): it
    # is refused afterwards only because downloading it would overwrite itself
    r = requests.post(f"{served.management}/models", params={"url": f"file://{store}/charrnn.mar"},
                      headers=auth, timeout=30)
    message = r.json().get("message", "")
    assert "allowed" not in message and "already exists" in message, message
