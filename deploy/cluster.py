"""A cluster on one machine, as `make cluster-test` and tests/test_deploy.py run it: replicas
started through the image's own start script (deploy/replica.sh, each in its own process group,
run folder, TMPDIR and loopback ports) behind the gateway started through its own start script
(deploy/k8s/base/gateway/gateway.sh) on a configuration rendered from the one template
(deploy/gateway.py).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy import gateway
from serve.config_properties import Ports, free_ports
from serve.server import MODELS, ready_workers

HERE = Path(__file__).resolve().parent
REPLICA_SCRIPT = HERE / "replica.sh"


class ClusterError(RuntimeError):
    pass


def new_token() -> str:
    """A client token: 43 URL-safe characters (256 random bits), as `deploy.gateway new-token` writes."""
    return secrets.token_urlsafe(32)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to the process `proc` (the leader of its group, started with start_new_session),
    as Kubernetes stops a container's first process; it stops what it started. Whatever of the
    group is left after `timeout` gets SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 5
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@dataclass
class Replica:
    """One replica: `deploy/replica.sh run` from `run_dir` on loopback `ports`."""

    name: str
    run_dir: Path
    model_store: Path
    ports: Ports = field(default_factory=lambda: Ports(*free_ports(3)))
    ready_port: int = field(default_factory=lambda: free_ports(1)[0])
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports.inference}"

    @property
    def server(self) -> tuple[str, int]:
        """What the gateway's configuration names: the inference address and the readiness port."""
        return self.address, self.ready_port

    def start(self, check: bool = True) -> None:
        """Start it (returns at once; `wait_ready` waits for its workers)."""
        if self.proc is not None and self.proc.poll() is None:
            raise ClusterError(f"{self.name} is already running")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = open(self.run_dir.parent / f"{self.name}.out", "ab")  # noqa: SIM115 (the child holds it)
        args = [str(REPLICA_SCRIPT), "run", "--dir", str(self.run_dir), "--model-store", str(self.model_store),
                "--bind", "127.0.0.1", "--inference-port", str(self.ports.inference),
                "--management-port", str(self.ports.management), "--metrics-port", str(self.ports.metrics),
                "--ready-port", str(self.ready_port), *([] if check else ["--no-check"])]
        env = {**os.environ, "CHARRNN_PYTHON": sys.executable}
        with log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            return all(0 < expected <= ready for ready, expected in
                       (ready_workers(self.run_dir, self.ports, m) for m in MODELS))
        except (OSError, ValueError, KeyError, IndexError):
            return False

    def wait_ready(self, timeout: float) -> float:
        """Seconds until every worker of every model is READY; ClusterError if it exits or times out."""
        started = time.monotonic()
        while not self.ready():
            if self.proc is None or self.proc.poll() is not None:
                raise ClusterError(f"{self.name} exited during start-up: see {self.run_dir.parent / (self.name + '.out')}")
            if time.monotonic() - started > timeout:
                raise ClusterError(f"{self.name}: workers not READY after {timeout:.0f} s")
            time.sleep(0.2)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL to the whole process group: the start script's Python, TorchServe's launcher,
        the Java frontend and every worker, at once (a machine or a pod dying)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 30.0) -> tuple[int | None, bool]:
        """SIGTERM to the start script's process, as Kubernetes sends it (it stops TorchServe
        gracefully): (its exit status, or None if it was not running; whether any process of its
        group was left to kill)."""
        if self.proc is None:
            return None, False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        status = self.proc.returncode
        deadline = time.monotonic() + 10  # the workers end a moment after the frontend
        while group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = group_alive(self.proc.pid)
        _stop_group(self.proc, 0)
        return status, left


@dataclass
class Gateway:
    """The load balancer: gateway.sh on a rendered local configuration, in front of `replicas`."""

    root: Path
    replicas: list[tuple[str, int]]  # each replica's inference "host:port" and readiness port
    tokens: list[str] = field(default_factory=lambda: [new_token()])
    port: int = field(default_factory=lambda: free_ports(1)[0])
    poll_seconds: float = 0.2
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def tokens_file(self) -> Path:
        return self.root / "tokens"

    @property
    def log(self) -> Path:
        return self.root / "gateway.log"

    @property
    def admin_socket(self) -> Path:
        return self.root / "run" / "admin.sock"

    def env(self) -> dict:
        return {**os.environ, "CHARRNN_GATEWAY_CONFIG": str(self.config), "CHARRNN_GATEWAY_TOKENS": str(self.tokens_file),
                "CHARRNN_GATEWAY_RUN": str(self.root / "run"), "CHARRNN_GATEWAY_POLL": str(self.poll_seconds),
                "HAPROXY": gateway.haproxy() or "haproxy"}

    def set_tokens(self, tokens: list[str]) -> None:
        """Replace the tokens file in one rename, as the kubelet updates a mounted Secret."""
        tmp = self.tokens_file.with_suffix(".new")
        tmp.write_text("".join(t + "\n" for t in tokens))
        tmp.replace(self.tokens_file)
        self.tokens = list(tokens)

    def start(self, timeout: float = 30.0) -> None:
        if gateway.haproxy() is None:
            raise ClusterError("haproxy not found: apt-get install -y haproxy (Debian's package; .ci/run installs it)")
        (self.root / "run").mkdir(parents=True, exist_ok=True)
        self.config.write_text(gateway.render_local(self.port, self.replicas))
        self.set_tokens(self.tokens)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(gateway.START_SCRIPT)], stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env(), start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise ClusterError(f"the gateway exited (status {self.proc.returncode}): see {self.log}") from None
                if time.monotonic() > deadline:
                    raise ClusterError(f"the gateway is not listening after {timeout:.0f} s: see {self.log}") from None
                time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None:
            _stop_group(self.proc, timeout)

    def admin(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.admin_socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[tuple[str, str], dict]:
        """(backend, server) -> its `show stat` row (status "UP", "DOWN", ...; stot: requests sent)."""
        lines = self.admin("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = {}
        for line in lines[1:]:
            if line:
                row = dict(zip(header, line.split(",")))
                if row["svname"] not in ("FRONTEND", "BACKEND"):
                    rows[(row["pxname"], row["svname"])] = row
        return rows

    def status(self, server: str) -> set[str]:
        """The statuses `server` (replica1, ...) has in the backends ({"UP"} when up in all)."""
        return {row["status"].split()[0] for (_, name), row in self.servers().items() if name == server}

    def wait_status(self, server: str, status: str, timeout: float) -> float:
        """Seconds until `server` is `status` in every backend; ClusterError after `timeout`."""
        started = time.monotonic()
        while self.status(server) != {status}:
            if time.monotonic() - started > timeout:
                raise ClusterError(f"{server} not {status} in the gateway after {timeout:.0f} s: {self.status(server)}")
            time.sleep(0.05)
        return time.monotonic() - started
