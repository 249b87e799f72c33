"""One TorchServe replica of a cluster, in the foreground: what the container runs (deploy/start.sh
execs `python -m deploy.replica run`) and what `make cluster-test` starts three of, through the
same script.

A replica differs from `make serve`'s instance in exactly the properties `replica_properties`
returns, nothing else (tests/test_deploy.py checks it):
- the inference and metrics APIs listen on `bind` (0.0.0.0 in a pod, so the Service reaches them;
  127.0.0.1 in the cluster test); the management API stays on the pod's loopback, where only the
  probes (exec, inside the container) reach it;
- token authorization is off: TorchServe's keys are per process and expire, so no client could
  hold one token for many replicas. The gateway checks the one client token instead, and the
  NetworkPolicy admits only the gateway's pods to a replica (docs/deploy.md, "Threat model").
- `number_of_gpu` is stated (0 on the CPU image) rather than guessed from nvidia-smi.

Commands:
  run    write <dir>/config.properties, start TorchServe in the foreground and stay its parent:
         SIGTERM/SIGINT are passed on to the Java frontend (a graceful stop), and the exit status
         is TorchServe's. The archives are checked in-process first (serve.archive), so a bad
         .mar fails the container at once with the reason instead of a worker retrying for ever.
         Beside it, on `bind`:--ready-port, GET /ready answers 200 only while every model has
         all its workers READY, else 503: what the gateway checks and the readiness probe asks
         (TorchServe's /ping answers as soon as its port is open, while the workers are still
         loading, so a replica checked by /ping alone gets requests it can only queue).
  ready  exit 0 when every model has all its workers READY (the same question, from a shell)
  ping   exit 0 when /ping answers 200 (the image's HEALTHCHECK, the liveness probe's path)

Every option has an environment variable (CHARRNN_...), which the Kubernetes manifests set.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from core import contract
from core.atomic import write_text_atomic
from serve.config_properties import Ports, render_config
from serve.procfs import is_alive
from serve.server import (
    MODELS,
    ServerError,
    check_archives,
    check_java,
    instance_env,
    instance_pid,
    ready_workers,
    torchserve_command,
)

PING = "/ping"  # TorchServe's liveness path on the inference port: the liveness probe and HEALTHCHECK
READY = "/ready"  # the replica's readiness path on READY_PORT: the gateway's check and the readiness probe
READY_PORT = 8083
# What a replica changes in the shipped config.properties (serve/config_properties.py); nothing else.
REPLICA_PROPERTIES = ("inference_address", "metrics_address", "disable_token_authorization", "number_of_gpu")


def replica_properties(bind: str, ports: Ports, gpus: int = 0) -> dict[str, str]:
    """The config.properties a replica sets over the shipped ones (see the module docstring)."""
    if gpus < 0:
        raise ValueError(f"gpus must be >= 0, got {gpus}")
    props = {"inference_address": f"http://{bind}:{ports.inference}",
             "metrics_address": f"http://{bind}:{ports.metrics}",
             "disable_token_authorization": "true",
             "number_of_gpu": str(gpus)}
    assert tuple(props) == REPLICA_PROPERTIES
    return props


def _ports(args) -> Ports:
    return Ports(args.inference_port, args.management_port, args.metrics_port)


def run(args) -> int:
    """Start TorchServe in the foreground from args.dir; returns its exit status."""
    run_dir, store, ports = Path(args.dir).resolve(), Path(args.model_store).resolve(), _ports(args)
    check_java()
    missing = [contract.archive(m) for m in MODELS if not (store / contract.archive(m)).is_file()]
    if missing:
        raise ServerError(f"{store}: missing {', '.join(missing)} (run `make archive`; the image copies them in)")
    if is_alive(instance_pid(run_dir)):
        raise ServerError(f"TorchServe already runs from {run_dir} (pid {instance_pid(run_dir)})")
    if args.check:
        check_archives(store, MODELS)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    config = run_dir / "config.properties"
    write_text_atomic(config, render_config(store, ports, replica_properties(args.bind, ports, args.gpus)))
    proc = subprocess.Popen(torchserve_command(config, store, MODELS, foreground=True), cwd=run_dir,
                            env=instance_env(run_dir))
    readiness = ReadinessServer((args.bind, args.ready_port), lambda: ready(args))
    threading.Thread(target=readiness.serve_forever, daemon=True).start()

    def forward(signum, _frame):
        # the launcher (proc) does not pass signals on: stop the Java frontend itself, whose
        # shutdown hook stops the workers; the launcher then returns its status
        java = instance_pid(run_dir)
        try:
            os.kill(java if is_alive(java) else proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return proc.wait()


class ReadinessServer(ThreadingHTTPServer):
    """GET /ready: 200 "READY" while `is_ready()`, else 503; the answer is reused for half a
    second (the gateway's pods and the kubelet may ask several times a second)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], is_ready, max_age: float = 0.5):
        self.is_ready, self.max_age = is_ready, max_age
        self._lock, self._at, self._ready = threading.Lock(), float("-inf"), False
        super().__init__(address, _ReadinessHandler)

    def answer(self) -> bool:
        with self._lock:
            if time.monotonic() - self._at > self.max_age:
                self._ready, self._at = self.is_ready(), time.monotonic()
            return self._ready


class _ReadinessHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != READY:
            self.send_error(404)
            return
        ok = self.server.answer()
        body = b"READY\n" if ok else b"NOT READY\n"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # one line a check would drown TorchServe's own log
        pass


def ready(args) -> bool:
    run_dir, ports = Path(args.dir).resolve(), _ports(args)
    try:
        return all(0 < expected <= count for count, expected in
                   (ready_workers(run_dir, ports, m) for m in MODELS))
    except (OSError, ValueError, KeyError, IndexError):
        return False


def ping(args) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{args.inference_port}{PING}", timeout=args.timeout) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def parser() -> argparse.ArgumentParser:
    env, defaults = os.environ.get, Ports()
    p = argparse.ArgumentParser(description="One TorchServe replica in the foreground (the container's process).")
    p.add_argument("action", choices=("run", "ready", "ping"))
    p.add_argument("--dir", default=env("CHARRNN_RUN_DIR", contract.default_path("replica")),
                   help="run folder: config.properties, logs, TMPDIR (CHARRNN_RUN_DIR)")
    p.add_argument("--model-store", default=env("CHARRNN_MODEL_STORE", contract.default_path(contract.MODEL_STORE)),
                   help="folder holding charrnn.mar and charrnn_session.mar (CHARRNN_MODEL_STORE)")
    p.add_argument("--bind", default=env("CHARRNN_BIND", "0.0.0.0"),
                   help="address of the inference and metrics APIs; management stays on 127.0.0.1 (CHARRNN_BIND)")
    p.add_argument("--inference-port", type=int, default=int(env("CHARRNN_INFERENCE_PORT", defaults.inference)))
    p.add_argument("--management-port", type=int, default=int(env("CHARRNN_MANAGEMENT_PORT", defaults.management)))
    p.add_argument("--metrics-port", type=int, default=int(env("CHARRNN_METRICS_PORT", defaults.metrics)))
    p.add_argument("--ready-port", type=int, default=int(env("CHARRNN_READY_PORT", READY_PORT)),
                   help=f"port of GET {READY} on --bind (CHARRNN_READY_PORT)")
    p.add_argument("--gpus", type=int, default=int(env("CHARRNN_GPUS", "0")),
                   help="GPUs TorchServe hands its workers (number_of_gpu; CHARRNN_GPUS)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the in-process check of the archives before starting")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds a ping waits")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.action == "ready":
        sys.exit(0 if ready(args) else 1)
    if args.action == "ping":
        sys.exit(0 if ping(args) else 1)
    try:
        sys.exit(run(args))
    except ServerError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
