"""The handle on one started TorchServe instance (serve/server.py starts and stops it): its
ports, keys, management API, workers, process tree and logs. `running` starts one in a
temporary directory on free loopback ports and always stops it. Tests, `make bench-serving` and
`make soak` use it; `make serve` runs serve/server.py's command line.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from serve.config_properties import Ports, free_ports
from serve.server import KEY_FILE, MODELS, ServerError, instance_pid, read_keys, start, stop
from serve.server_logs import log_lines, worker_deaths


class Instance:
    """One TorchServe instance run from `run_dir` (its config, key file, logs and pid file), on
    `ports` (free loopback ones by default): what tests, the bench and the soak need of it.
    start() and stop() may be called again: a restart (with new keys)."""

    def __init__(self, run_dir: str | Path, model_store: str | Path, *, ports: Ports | None = None,
                 models: tuple[str, ...] = MODELS, properties: Mapping[str, object] | None = None,
                 timeout: float = 240.0):
        self.run_dir, self.store = Path(run_dir).resolve(), Path(model_store).resolve()
        self.ports = ports or Ports(*free_ports(3))  # start picks free gRPC ports itself
        self.models, self.properties, self.timeout = tuple(models), dict(properties or {}), timeout
        self.inference = f"http://127.0.0.1:{self.ports.inference}"
        self.management = f"http://127.0.0.1:{self.ports.management}"
        self.key_file = self.run_dir / KEY_FILE  # what serve.client.Client reads (and renews)
        self.keys: dict[str, str] = {}
        self.started_s = 0.0

    def start(self, check: bool = True) -> float:
        """Start and wait for READY workers (see `start`); the seconds it took."""
        started = time.monotonic()
        start(self.run_dir, self.store, self.ports, self.models, timeout=self.timeout, check=check,
              properties=self.properties)
        self.started_s = time.monotonic() - started
        self.keys = read_keys(self.run_dir)  # new keys at every start
        return self.started_s

    def stop(self) -> bool:
        return stop(self.run_dir)

    def key(self, kind: str = "inference") -> str:
        return self.keys[kind]

    def manage(self, method: str, path: str, timeout: float = 120.0) -> tuple[int, object]:
        """(status, JSON body or text) of a management API call, with the management key."""
        req = urllib.request.Request(self.management + path, method=method,
                                     headers={"Authorization": f"Bearer {self.key('management')}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def model_info(self, model: str) -> dict:
        status, info = self.manage("GET", f"/models/{model}", timeout=10)
        if status != 200:
            raise ServerError(f"GET /models/{model}: HTTP {status} {info}")
        return info[0]

    def workers(self, model: str) -> list[dict]:
        return self.model_info(model)["workers"]

    def worker_pids(self, model: str) -> list[int]:
        return sorted(int(w["pid"]) for w in self.workers(model))

    @property
    def java_pid(self) -> int | None:
        return instance_pid(self.run_dir)

    def process_groups(self) -> dict[str, list[int]]:
        """The instance's process tree by role, for CPU accounting (serve.procfs.cpu_meter): the
        Java frontend, and each model's Python workers."""
        groups = {"frontend (Java)": [self.java_pid]}
        for m in self.models:
            groups[f"workers {m}"] = self.worker_pids(m)
        return groups

    def log_lines(self, name: str) -> list[str]:
        return log_lines(self.run_dir, name)

    def worker_deaths(self) -> int:
        return worker_deaths(self.run_dir)


@contextmanager
def running(model_store: str | Path, models: tuple[str, ...] = MODELS, *, run_dir: str | Path | None = None,
            properties: Mapping[str, object] | None = None, timeout: float = 240.0, check: bool = True,
            prefix: str = "charrnn-torchserve-") -> Iterator[Instance]:
    """A started Instance, always stopped on the way out; without `run_dir` it runs from a new
    temporary directory (removed afterwards)."""
    root = None if run_dir is not None else Path(tempfile.mkdtemp(prefix=prefix))
    inst = Instance(run_dir if run_dir is not None else root / "run", model_store, models=models,
                    properties=properties, timeout=timeout)
    try:
        inst.start(check=check)
        yield inst
    finally:
        try:
            inst.stop()
        finally:
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)
