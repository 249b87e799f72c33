"""The gateway's configuration: one HAProxy template (deploy/k8s/base/gateway/haproxy.cfg.in), the
routing rules of both the Kubernetes gateway and `make cluster-test`'s load balancer, rendered here
with the values that come from the serving configuration rather than copied into it: the model
paths (core.contract), the replicas' inference port (serve.config_properties.Ports), the body cap
and response timeout (serve/config/*.yaml), the readiness path and port (deploy.replica.READY),
the session header (serve.standin.SEQUENCE_ID).

  python -m deploy.gateway render-k8s [--check]     rewrite (or check) deploy/k8s/base/gateway/haproxy.cfg
  python -m deploy.gateway render-local --port P --replica 127.0.0.1:8080,8083 ... --out FILE
  python -m deploy.gateway new-token --out FILE     a client token (docs/deploy.md: rotation)

The start script of the gateway, deploy/k8s/base/gateway/gateway.sh, runs HAProxy from the rendered
file in both places.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from core import contract
from core.atomic import write_text_atomic
from deploy.replica import READY, READY_PORT
from serve.config_properties import Ports
from serve.standin import SEQUENCE_ID

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GATEWAY_DIR = HERE / "k8s" / "base" / "gateway"
TEMPLATE = GATEWAY_DIR / "haproxy.cfg.in"
K8S_CONFIG = GATEWAY_DIR / "haproxy.cfg"
START_SCRIPT = GATEWAY_DIR / "gateway.sh"
MODEL_CONFIGS = ROOT / "serve" / "config"

K8S_PORT = 8080  # the gateway's own port in its pod (a non-root process binds no port below 1024)
MAX_REPLICAS = 16  # server slots the Kubernetes gateway fills from DNS: >= the HPA's maxReplicas (tested)
BACKENDS = ("oneshot", "sessions")


@dataclass(frozen=True)
class HealthCheck:
    """The active health check of every replica (HAProxy's units: ms)."""

    inter_ms: int = 1000  # between checks while up
    fastinter_ms: int = 250  # between checks once one failed (or real traffic met an error)
    fall: int = 2  # failed checks before a replica is out
    rise: int = 2  # passed checks before it is back
    connect_timeout_ms: int = 1000  # the defaults' `timeout connect`, which a check also waits at most

    def detect_bound_s(self) -> float:
        """The longest a dead replica stays in: the check after its death comes at most `inter`
        later, each further failing check `fastinter` after the last, and each waits at most the
        connect timeout (a refused connection fails at once)."""
        return (self.inter_ms + (self.fall - 1) * self.fastinter_ms + self.fall * self.connect_timeout_ms) / 1000

    def server_options(self) -> str:
        return (f"check inter {self.inter_ms} fastinter {self.fastinter_ms} downinter {self.inter_ms} "
                f"fall {self.fall} rise {self.rise} maxconn 64 observe layer4 error-limit 1 on-error fastinter")


CHECK = HealthCheck()


def model_configs() -> dict[str, dict]:
    """serve/config/<model>.yaml of each served model, parsed."""
    return {m: yaml.safe_load((MODEL_CONFIGS / f"{m}.yaml").read_text(encoding="utf-8")) for m in contract.MODELS}


def serving_values() -> dict[str, int]:
    """What the gateway takes from the serving configuration: the largest body a handler accepts
    and the longest a replica may take to answer (seconds)."""
    configs = model_configs()
    max_body = max(int(c["handler"]["limits"]["max_body_bytes"]) for c in configs.values())
    response_timeout = max(int(c.get("responseTimeout", 0)) for c in configs.values())
    shipped = re.search(r"^default_response_timeout=(\d+)$", _shipped_properties(), re.MULTILINE)
    if shipped:
        response_timeout = max(response_timeout, int(shipped.group(1)))
    return {"max_body": max_body, "response_timeout": response_timeout}


def _shipped_properties() -> str:
    from serve.config_properties import render_config

    return render_config(Path("/store"), Ports(grpc_inference=1, grpc_management=2))  # any store: only the timeout is read


def render(bind: str, servers: str, resolvers: str = "") -> str:
    """The template with its @NAME@ fields filled in; `servers`: the server lines of a backend."""
    values = serving_values()
    fields = {
        "BIND": bind,
        "SERVERS": servers,
        "RESOLVERS": resolvers,
        "SERVER_OPTIONS": CHECK.server_options(),
        "DETECT_BOUND": f"{CHECK.detect_bound_s():g} s",
        "READY": READY,
        "SESSION_HEADER": SEQUENCE_ID,
        "ONESHOT_PATH": f"/predictions/{contract.MODEL}",
        "SESSION_PATH": f"/predictions/{contract.SESSION_MODEL}",
        "MAX_BODY": str(values["max_body"]),
        "RESPONSE_TIMEOUT": str(values["response_timeout"]),
        "SERVER_TIMEOUT": str(values["response_timeout"] + 5),
    }
    text = TEMPLATE.read_text(encoding="utf-8")
    for name, value in fields.items():
        text = text.replace(f"@{name}@", value)
    left = sorted(set(re.findall(r"@([A-Z_]+)@", text)))
    if left:
        raise ValueError(f"{TEMPLATE}: fields with no value: {left}")
    return text


def render_k8s() -> str:
    """The Kubernetes gateway: replicas found by DNS (the headless Service's ready pods), in up to
    MAX_REPLICAS slots, on the replicas' inference port."""
    port = Ports().inference
    servers = (f'    server-template replica 1-{MAX_REPLICAS} "${{CHARRNN_REPLICAS}}:{port}" port {READY_PORT} '
               "resolvers cluster resolve-prefer ipv4 init-addr none")
    resolvers = ("resolvers cluster\n"
                 "    # the pod's nameservers; a replica that is not Ready is not in the Service's DNS\n"
                 "    parse-resolv-conf\n"
                 "    resolve_retries 3\n"
                 "    timeout resolve 1s\n"
                 "    timeout retry 1s\n"
                 "    hold valid 5s\n"
                 "    hold obsolete 5s\n")
    return render(f"*:{K8S_PORT}", servers, resolvers)


def render_local(port: int, replicas: Sequence[tuple[str, int]]) -> str:
    """make cluster-test's load balancer: on 127.0.0.1:`port`, in front of `replicas`
    (("host:port" of a replica's inference API, its readiness port) each), named replica1, ..."""
    if not replicas:
        raise ValueError("at least one replica")
    servers = "\n".join(f"    server replica{i} {address} port {ready}" for i, (address, ready) in enumerate(replicas, 1))
    return render(f"127.0.0.1:{port}", servers)


def haproxy() -> str | None:
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).is_file()), None)


def check_config(path: Path, env: dict) -> str:
    """`haproxy -c` on a rendered file (with the environment gateway.sh gives it); its output.
    RuntimeError with HAProxy's message when the file does not parse."""
    exe = haproxy()
    if exe is None:
        raise RuntimeError("haproxy not found: apt-get install -y haproxy")
    out = subprocess.run([exe, "-c", "-f", str(path)], check=False, env=env, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"haproxy -c {path}:\n{out.stdout}{out.stderr}")
    return out.stdout + out.stderr


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Render the gateway's HAProxy configuration from its one template.")
    sub = p.add_subparsers(dest="action", required=True)
    k8s = sub.add_parser("render-k8s", help=f"write {K8S_CONFIG.relative_to(ROOT)}")
    k8s.add_argument("--check", action="store_true", help="only check that the committed file is current")
    local = sub.add_parser("render-local", help="a load balancer on loopback for make cluster-test")
    local.add_argument("--port", type=int, required=True)
    local.add_argument("--replica", action="append", required=True,
                       help="host:port,ready_port of a replica (repeat)")
    local.add_argument("--out", required=True)
    token = sub.add_parser("new-token", help="write a new client token (256 random bits) to a file")
    token.add_argument("--out", required=True, help="the file (created with mode 600; refused if it exists)")
    args = p.parse_args(argv)
    if args.action == "new-token":
        try:
            fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            sys.exit(f"error: {args.out} exists: a token file is never overwritten (choose another name)")
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
        print(f"wrote a new token to {args.out}")
        return
    if args.action == "render-k8s":
        text = render_k8s()
        if args.check:
            if not K8S_CONFIG.is_file() or K8S_CONFIG.read_text(encoding="utf-8") != text:
                sys.exit(f"{K8S_CONFIG.relative_to(ROOT)} is not the rendering of its template: run `make deploy-render`")
            print(f"{K8S_CONFIG.relative_to(ROOT)} is current")
            return
        write_text_atomic(K8S_CONFIG, text)
        print(f"wrote {K8S_CONFIG.relative_to(ROOT)}")
    else:
        replicas = [(r.split(",")[0], int(r.split(",")[1])) for r in args.replica]
        write_text_atomic(Path(args.out), render_local(args.port, replicas))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
