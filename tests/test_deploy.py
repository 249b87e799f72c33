"""The deployment (deploy/, docs/deploy.md), offline: the Kubernetes manifests rendered with
`kubectl kustomize` and validated against the Kubernetes schemas (kubernetes-validate, its bundled
schemas, no network), held to the serving configuration they must agree with; the Dockerfiles
calling only the scripts CI runs; the gateway's configuration rendered from its one template and
accepted by HAProxy; the replica's config.properties; the image's packages. The real thing,
one replica behind the gateway, runs in tests/test_deploy_smoke.py; three under load with a kill
in `make cluster-test`."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core import contract
from deploy import gateway, requirements
from deploy.cluster_test import gateway_log, moved_sessions
from deploy.reference import differences
from deploy.replica import PING, READY, READY_PORT, REPLICA_PROPERTIES, replica_properties
from serve.config_properties import Ports, render_config
from tests.conftest import in_ci
from tests.test_layers import closure, project_modules

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OVERLAYS = ("cpu", "gpu")
DOCKERFILES = {flavour: DEPLOY / f"Dockerfile.{flavour}" for flavour in OVERLAYS}
SCRIPTS = {"deploy/install.sh", "deploy/replica.sh"}  # what an image's instructions may run
APP = "/srv/charrnn/app"  # the image's WORKDIR
REPLICA = {"app.kubernetes.io/name": "charrnn", "app.kubernetes.io/component": "replica"}
GATEWAY = {"app.kubernetes.io/name": "charrnn", "app.kubernetes.io/component": "gateway"}


def need(tool: str, why: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/usr/bin/{tool}", f"/usr/sbin/{tool}") if Path(p).is_file()), None)
    if path is None:
        message = f"{why} needs {tool}"
        if in_ci():
            pytest.fail(f"{message} (CI is set: .ci/run installs it)", pytrace=False)
        pytest.skip(message)
    return path


# ---------------------------------------------------------------- Kubernetes manifests


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    """(overlay, its objects) as `kubectl kustomize deploy/k8s/overlays/<overlay>` renders them."""
    kubectl = need("kubectl", "rendering the kustomize overlays")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / request.param)], check=False,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return request.param, [d for d in yaml.safe_load_all(out.stdout) if d]


def obj(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def container(objects, deployment: str) -> dict:
    return obj(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def test_every_object_is_valid_against_the_kubernetes_schemas_offline(rendered, monkeypatch):
    import kubernetes_validate

    def no_network(*args, **kwargs):
        raise AssertionError("kubernetes-validate tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    _, objects = rendered
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "NetworkPolicy", "ConfigMap"} <= kinds
    for o in objects:
        kubernetes_validate.validate(o, kubernetes_validate.latest_version(), strict=True)


def test_the_validator_refuses_a_wrong_object(monkeypatch):
    """The check above is only as good as the validator: a misspelt field must fail it."""
    import kubernetes_validate

    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"ports": [{"port": "eighty"}], "selectr": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.latest_version(), strict=True)


def test_the_replicas_listen_where_the_serving_config_says(rendered):
    _, objects = rendered
    ports = {p["name"]: p["containerPort"] for p in container(objects, "charrnn-replicas")["ports"]}
    assert ports == {"inference": Ports().inference, "metrics": Ports().metrics, "ready": READY_PORT}
    makefile = (ROOT / "Makefile").read_text()
    assert f"INFERENCE_PORT  ?= {ports['inference']}" in makefile
    assert f"METRICS_PORT    ?= {ports['metrics']}" in makefile
    service = obj(objects, "Service", "charrnn-replicas")["spec"]
    assert service["clusterIP"] == "None" and service["selector"] == REPLICA  # DNS of the ready pods
    assert [p["port"] for p in service["ports"]] == [ports["inference"]]


def test_the_probes_use_readiness_and_ping(rendered):
    _, objects = rendered
    c = container(objects, "charrnn-replicas")
    assert c["livenessProbe"]["httpGet"] == {"path": PING, "port": "inference"}
    for probe in ("readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": READY, "port": "ready"}, probe


def test_the_cpu_request_covers_the_workers_of_both_models(rendered):
    """serve/config/*.yaml: maxWorkers x handler.threads torch threads per model, all busy at once."""
    _, objects = rendered
    threads = sum(int(c["maxWorkers"]) * int(c["handler"].get("threads", 1)) for c in gateway.model_configs().values())
    cpu = container(objects, "charrnn-replicas")["resources"]["requests"]["cpu"]
    cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    assert cores >= threads, f"requests.cpu {cpu} < {threads} worker threads"


def test_scaling_and_disruption_budgets_agree(rendered):
    _, objects = rendered
    hpa = obj(objects, "HorizontalPodAutoscaler", "charrnn-replicas")["spec"]
    pdb = obj(objects, "PodDisruptionBudget", "charrnn-replicas")["spec"]
    deployment = obj(objects, "Deployment", "charrnn-replicas")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "charrnn-replicas"
    assert hpa["maxReplicas"] <= gateway.MAX_REPLICAS, "more replicas than the gateway has server slots"
    assert pdb["minAvailable"] < hpa["minReplicas"] <= deployment["replicas"]
    assert pdb["selector"]["matchLabels"] == REPLICA == deployment["selector"]["matchLabels"]
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_only_the_gateway_reaches_the_replicas(rendered):
    _, objects = rendered
    policy = obj(objects, "NetworkPolicy", "charrnn-replicas")["spec"]
    assert policy["podSelector"]["matchLabels"] == REPLICA
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"} and policy["egress"] == []
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": GATEWAY}}]
    assert rule["ports"] == [{"port": Ports().inference, "protocol": "TCP"}, {"port": READY_PORT, "protocol": "TCP"}]
    labels = obj(objects, "Deployment", "charrnn-gateway")["spec"]["template"]["metadata"]["labels"]
    assert GATEWAY.items() <= labels.items()


def test_the_gateway_runs_the_rendered_template_and_the_tokens_secret(rendered):
    _, objects = rendered
    config = obj(objects, "ConfigMap", "charrnn-gateway")["data"]
    assert config["haproxy.cfg"] == gateway.render_k8s()
    assert config["gateway.sh"] == gateway.START_SCRIPT.read_text()
    spec = obj(objects, "Deployment", "charrnn-gateway")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["config"]["configMap"]["name"].startswith("charrnn-gateway")
    assert env["CHARRNN_GATEWAY_CONFIG"] == f"{mounts['config']}/haproxy.cfg"
    assert c["command"] == ["/bin/sh", f"{mounts['config']}/gateway.sh"]
    assert volumes["tokens"]["secret"]["secretName"] == "charrnn-gateway-tokens"
    assert os.path.dirname(env["CHARRNN_GATEWAY_TOKENS"]) == mounts["tokens"]
    assert not any("subPath" in m for m in c["volumeMounts"]), "a subPath mount never sees a rotated Secret"
    assert env["CHARRNN_REPLICAS"].startswith("charrnn-replicas.$(POD_NAMESPACE).svc.")
    assert [p["containerPort"] for p in c["ports"]] == [gateway.K8S_PORT]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and "monitor-uri /healthz" in config["haproxy.cfg"]


def test_pods_run_unprivileged_from_pinned_images(rendered):
    overlay, objects = rendered
    for d in (o for o in objects if o["kind"] == "Deployment"):
        spec = d["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
        for c in spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            name, _, tag = c["image"].rpartition(":")
            assert name and tag and tag != "latest", c["image"]
    replica = container(objects, "charrnn-replicas")
    env = {e["name"]: e.get("value") for e in replica["env"]}
    gpus = replica["resources"].get("limits", {}).get("nvidia.com/gpu")
    assert (env["CHARRNN_GPUS"], gpus, replica["image"].rpartition(":")[2].split("-")[0]) == \
        (("1", 1, "gpu") if overlay == "gpu" else ("0", None, "cpu"))


def test_the_committed_gateway_config_is_the_rendering_of_its_template():
    assert gateway.K8S_CONFIG.read_text() == gateway.render_k8s(), "run `make deploy-render`"


# ---------------------------------------------------------------- the gateway's configuration


def test_the_gateway_config_takes_its_values_from_the_serving_config():
    configs = gateway.model_configs()
    text = gateway.render_local(9000, [("127.0.0.1:9001", 9011), ("127.0.0.1:9002", 9012)])
    max_body = max(c["handler"]["limits"]["max_body_bytes"] for c in configs.values())
    assert f"req.body_size gt {max_body} " in text
    timeout = int(re.search(r"timeout server (\d+)s", text).group(1))
    assert timeout > max(c["responseTimeout"] for c in configs.values())
    assert f"path /predictions/{contract.MODEL}\n" in text and f"path /predictions/{contract.SESSION_MODEL}\n" in text
    assert text.count(f"http-check send meth GET uri {READY}") == len(gateway.BACKENDS)
    assert re.findall(r"server (replica\d) (\S+) port (\d+)", text) == \
        [("replica1", "127.0.0.1:9001", "9011"), ("replica2", "127.0.0.1:9002", "9012")] * 2
    assert gateway.render_k8s().count(f":{Ports().inference}\" port {READY_PORT} ") == len(gateway.BACKENDS)
    assert "@" not in re.sub(r"#.*", "", text)
    with pytest.raises(ValueError):
        gateway.render_local(9000, [])


@pytest.mark.parametrize("target", ["k8s", "local"])
def test_haproxy_accepts_the_rendered_config_without_a_warning(target, tmp_path):
    need("haproxy", "checking the gateway's configuration")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(gateway.render_k8s() if target == "k8s" else gateway.render_local(9000, [("127.0.0.1:9001", 9011)]))
    (tmp_path / "tokens").write_text("a" * 43 + "\n")
    (tmp_path / "run").mkdir()
    env = {**os.environ, "CHARRNN_GATEWAY_TOKENS": str(tmp_path / "tokens"), "CHARRNN_GATEWAY_RUN": str(tmp_path / "run"),
           "CHARRNN_REPLICAS": "charrnn-replicas.charrnn.svc.cluster.local"}
    out = gateway.check_config(cfg, env)
    assert "WARNING" not in out and "ALERT" not in out, out
    cfg.write_text(cfg.read_text().replace("balance leastconn", "balance leastconns"))
    with pytest.raises(RuntimeError, match="balance only supports"):
        gateway.check_config(cfg, env)


def test_the_detection_bound_follows_the_check_settings():
    check = gateway.HealthCheck(inter_ms=1000, fastinter_ms=250, fall=2, connect_timeout_ms=1000)
    assert check.detect_bound_s() == pytest.approx(1.0 + 0.25 + 2.0)
    assert "inter 1000 fastinter 250 downinter 1000 fall 2 rise 2" in check.server_options()


# ---------------------------------------------------------------- the replica


def test_a_replica_changes_only_the_documented_properties():
    ports = Ports(8080, 8081, 8082, 7070, 7071)
    shipped = render_config(Path("/store"), ports)
    replica = render_config(Path("/store"), ports, replica_properties("0.0.0.0", ports, gpus=1))

    def props(text):
        return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))

    a, b = props(shipped), props(replica)
    assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == set(REPLICA_PROPERTIES)
    assert b["management_address"] == "http://127.0.0.1:8081"  # the probes only, inside the pod
    assert b["inference_address"] == "http://0.0.0.0:8080" and b["disable_token_authorization"] == "true"
    assert b["enable_model_api"] == "false" and b["allowed_urls"].startswith("file:///store/")
    assert b["number_of_gpu"] == "1"
    with pytest.raises(ValueError):
        replica_properties("0.0.0.0", ports, gpus=-1)


# ---------------------------------------------------------------- images


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
            pending = ""
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not the exec form: {args}"
    return value


@pytest.mark.parametrize("flavour", OVERLAYS)
def test_the_dockerfile_runs_only_the_deploy_scripts(flavour):
    steps = instructions(DOCKERFILES[flavour])
    run = [(k, a) for k, a in steps if k in ("RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK")]
    assert {k for k, _ in run} == {"RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK"}
    entrypoint = exec_form(next(a for k, a in run if k == "ENTRYPOINT"))
    for keyword, args in run:
        if keyword == "HEALTHCHECK":
            args = args[args.index("CMD ") + 4:]
        argv = exec_form(args)
        program = argv[0] if keyword != "CMD" else entrypoint[0]
        assert program in SCRIPTS, f"{flavour}: {keyword} {args} runs {program}, not one of {sorted(SCRIPTS)}"
        assert os.access(ROOT / program, os.X_OK), program
    assert ("WORKDIR", APP) in steps
    assert exec_form(next(a for k, a in run if k == "CMD")) == ["run"]
    assert "replica.sh\", \"ping\"]" in next(a for k, a in run if k == "HEALTHCHECK")
    flavour_arg = [exec_form(a) for k, a in run if k == "RUN" and exec_form(a)[1] == "python"]
    assert flavour_arg == [["deploy/install.sh", "python", "/opt/venv", "cuda" if flavour == "gpu" else "cpu"]]


@pytest.mark.parametrize("flavour", OVERLAYS)
def test_the_image_is_non_root_exposes_the_serving_ports_and_states_its_gpus(flavour):
    steps = instructions(DOCKERFILES[flavour])
    user = next(a for k, a in steps if k == "USER")
    uid = re.search(r"--uid (\d+)", (DEPLOY / "install.sh").read_text()).group(1)
    assert user == f"{uid}:{uid}" and uid != "0"
    assert next(a for k, a in steps if k == "EXPOSE").split() == [str(Ports().inference), str(Ports().metrics), str(READY_PORT)]
    env = " ".join(a for k, a in steps if k == "ENV")
    assert f"CHARRNN_GPUS={1 if flavour == 'gpu' else 0}" in env
    for name in ("CHARRNN_RUN_DIR", "CHARRNN_MODEL_STORE"):
        assert f"{name}=/srv/charrnn/" in env


def copied_sources(flavour: str) -> list[str]:
    return [src for k, a in instructions(DOCKERFILES[flavour]) if k == "COPY" for src in a.split()[:-1]]


@pytest.mark.parametrize("flavour", OVERLAYS)
def test_the_image_holds_every_module_its_processes_import(flavour):
    """The replica's start script (deploy.replica) and the handler the archive check starts import
    project modules the image must hold, and third-party packages it must install."""
    mods = project_modules()
    needed = {"deploy.replica", "serve.handler"}
    for name in list(needed):
        needed |= {m for m in closure(name, mods) if m in mods}
    copied = {src.rstrip("/") for src in copied_sources(flavour)}
    missing = sorted(m for m in needed if m.split(".")[0] not in copied)
    assert not missing, f"Dockerfile.{flavour} does not copy {missing}"
    third_party = {m.split(".")[0] for name in needed for m in closure(name, mods)} - {p for p in mods} - set(sys.stdlib_module_names)
    distributions = importlib.metadata.packages_distributions()
    installed = {requirements.pins()[n].split("==")[0].lower() for n in requirements.SERVING}
    for module in sorted(third_party - {"ts", "__future__"}):
        dists = {d.lower() for d in distributions.get(module, [])}
        assert dists & installed, f"{module} (from {dists}) is not among deploy/requirements.py SERVING"


@pytest.mark.parametrize("flavour", OVERLAYS)
def test_the_build_context_admits_what_the_dockerfile_copies(flavour):
    ignore = (DEPLOY / f"Dockerfile.{flavour}.dockerignore").read_text().splitlines()
    admitted = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for src in copied_sources(flavour):
        src = src.replace("${MODEL_STORE}", "artifacts/model_store").rstrip("/")
        assert any(src == a or Path(src).match(a) or src.startswith(a + "/") for a in admitted), \
            f"Dockerfile.{flavour} copies {src}, which its .dockerignore leaves out"


def test_the_image_requirements_are_the_project_pins():
    pins = requirements.pins()
    project = re.findall(r'^\s*"([A-Za-z0-9_.-]+==[^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert requirements.serving() == [p for p in project if p.split("==")[0].lower() in requirements.SERVING]
    assert set(requirements.SERVING) <= set(pins)
    out = subprocess.run([sys.executable, str(DEPLOY / "requirements.py"), "--except", "torch"], check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == [pins[n] for n in requirements.SERVING if n != "torch"]


def test_the_install_script_refuses_what_it_does_not_know(tmp_path):
    for args in (["nonsense"], ["python", str(tmp_path / "v"), "rocm"], ["python", str(tmp_path / "v"), "cpu", "--yes"]):
        out = subprocess.run([str(DEPLOY / "install.sh"), *args], check=False, capture_output=True, text=True)
        assert out.returncode == 2 and out.stderr, args
    assert not (tmp_path / "v").exists()


def test_the_install_script_resolves_the_serving_packages(tmp_path):
    """The image's Python step, as a dry run into a fresh venv (pip resolves every pin from the
    registry; torch from pip's own configuration here, TORCH_INDEX_URL set and empty)."""
    env = {**os.environ, "TORCH_INDEX_URL": ""}
    out = subprocess.run([str(DEPLOY / "install.sh"), "python", str(tmp_path / "venv"), "cpu", "--dry-run"],
                         check=False, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    for pin in requirements.serving():
        name, version = pin.split("==")
        assert re.search(rf"(?i)\b{re.escape(name)}-{re.escape(version)}\b|already satisfied: {re.escape(name)}",
                         out.stdout.replace("_", "-").replace("PyYAML", "pyyaml")), pin
    assert stat.S_ISDIR((tmp_path / "venv" / "bin").stat().st_mode)


# ---------------------------------------------------------------- the cluster test's own readers


def test_the_gateway_log_reader_and_the_moved_sessions(tmp_path):
    log = tmp_path / "gateway.log"
    log.write_text(
        "[NOTICE]   (1) : New worker (2) forked\n"
        "127.0.0.1 07/Dec/2026:00:10:58.216 charrnn oneshot/replica1 200 24/24 0 {} {}\n"
        "127.0.0.1 07/Dec/2026:00:10:58.300 charrnn sessions/replica1 200 3/3 0 {} {s1}\n"
        "127.0.0.1 07/Dec/2026:00:10:58.400 charrnn sessions/replica2 200 3/3 +1 {s1} {s1}\n"
        "127.0.0.1 07/Dec/2026:00:10:58.500 charrnn sessions/replica2 200 3/3 0 {s1} {s1}\n"
        "127.0.0.1 07/Dec/2026:00:10:58.600 charrnn sessions/replica3 200 3/3 0 {s2} {}\n"
        "127.0.0.1 07/Dec/2026:00:10:58.700 charrnn charrnn/<NOSRV> 401 -1/0 0 {} {}\n")
    lines = gateway_log(log)
    assert [(x["backend"], x["server"], x["status"], x["retries"], x["sid"]) for x in lines][:3] == [
        ("oneshot", "replica1", "200", "0", ""), ("sessions", "replica1", "200", "0", "s1"),
        ("sessions", "replica2", "200", "+1", "s1")]
    assert len(lines) == 6 and moved_sessions(lines) == 1


def test_answers_are_compared_exactly_except_for_numbers_and_the_session_id():
    want = {"session": "a", "text": "Lu", "next": [{"char": "i", "p": 0.36055}], "completion": "Luiz"}
    assert differences({**want, "session": "b"}, want) == []
    assert differences({**want, "next": [{"char": "i", "p": 0.36055 * (1 + 5e-5)}]}, want) == []
    assert differences({**want, "next": [{"char": "i", "p": 0.37}]}, want)
    assert differences({**want, "completion": "Luis"}, want)
    assert differences({**want, "next": []}, want)
    assert differences({k: v for k, v in want.items() if k != "completion"}, want)


# ---------------------------------------------------------------- the client in front of a gateway


def test_the_client_resends_once_a_request_whose_connection_closed_and_never_a_timed_out_one():
    """A gateway reloading (a token rotation) may close a kept-alive connection as a request goes
    out: serve.client sends it once more (every request is a function of its body alone)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from serve.client import Client, ClientError

    seen: list[str] = []

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self):  # http.server's name for it
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers.get("Authorization"))
            if len(seen) % 2 == 1:  # every other request: the connection closes with no answer
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            body = b'{"names": ["Ana"], "logprobs": [-1.0]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(f"http://127.0.0.1:{server.server_port}", token="t" * 43, management_url=None)
        assert client.generate("A") == ["Ana"]
        assert seen == [f"Bearer {'t' * 43}"] * 2  # the fixed token, sent twice: one resend
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as silent:  # accepts, never answers: a timeout, not resent
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        client = Client(f"http://127.0.0.1:{silent.getsockname()[1]}", token="t" * 43, management_url=None, timeout=0.5)
        with pytest.raises(ClientError) as err:
            client.generate("A")
        assert err.value.status == 0 and "ReadTimeout" in err.value.message
