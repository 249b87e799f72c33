"""Start, wait for, and stop a TorchServe instance serving the CharRNN archives: the one
TorchServe wrapper (`make serve`, the tests, `make bench-serving` and `make soak` all use it).

Usage (what `make serve` / `make stop` run):
  python -m serve.server start --dir artifacts/serve --model-store artifacts/model_store \
      [--inference-port 8080 --management-port 8081 --metrics-port 8082]
  python -m serve.server stop --dir artifacts/serve

`start` first checks each archive in-process (serve.archive.check_archive: the handler started
on the unpacked .mar, as a worker would), then writes <dir>/config.properties
(serve/config_properties.py: loopback-only addresses, token authorization on, the model
register/unregister API off, allowed_urls restricted to the model store), starts TorchServe in
the background from <dir> (so the token file is <dir>/key_file.json and the logs go to
<dir>/logs), and returns only when every model's workers are READY (/ping answers before the
models can). It fails fast, with the reason from the logs (serve/server_logs.py), when
TorchServe cannot load an archive (the model is not registered) or a worker dies while loading
(TorchServe would retry it for ever). Everything instance-specific (pid file, worker sockets,
Java temp files) lives under <dir>/tmp, so several instances (tests) can run side by side on
other ports.

In Python, serve/instance.py (`running`, `Instance`) is the handle on one started instance that
tests, `make bench-serving` and `make soak` use.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core import contract
from serve.config_properties import Ports, render_config
from serve.procfs import is_alive
from serve.server_logs import log_sizes, log_tail, new_log_lines, startup_failure

MODELS = contract.MODELS
KEY_FILE = contract.KEY_FILE
FRONTEND_STARTED = "Model server started."  # stdout, once TorchServe's servers are bound


class ServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class Java:
    executable: str  # resolved path of a java that reports version 17 or newer
    version: str  # its `java -version` first line

    @property
    def home(self) -> str:
        """The JAVA_HOME of `executable` (<home>/bin/java): what TorchServe's launcher runs."""
        return str(Path(self.executable).parent.parent)


def _java_version(java: str) -> tuple[int, str]:
    """(major version, first line of `java -version`); (0, why) when it does not run."""
    try:
        out = subprocess.run([java, "-version"], check=False, capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 0, f"does not run ({type(exc).__name__})"
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    return major, out.strip().splitlines()[0] if out.strip() else "no version reported"


def find_java() -> Java:
    """A Java 17+: $JAVA_HOME/bin/java when that works, else `java` on PATH (a stale JAVA_HOME
    must not hide a good java). ServerError saying what was tried otherwise."""
    candidates, tried = [], []
    if os.environ.get("JAVA_HOME"):
        candidates.append((os.path.join(os.environ["JAVA_HOME"], "bin", "java"), f"JAVA_HOME={os.environ['JAVA_HOME']}"))
    candidates.append((shutil.which("java"), "java on PATH"))
    for java, label in candidates:
        if not java or not os.path.isfile(java):
            tried.append(f"{label}: not found")
            continue
        major, line = _java_version(java)
        if major >= 17:
            return Java(os.path.realpath(java), line)
        tried.append(f"{label}: {line}")
    raise ServerError("Java 17 or newer is required by TorchServe (" + "; ".join(tried) + "). Install it "
                      "(e.g. apt-get install openjdk-17-jre-headless) or point JAVA_HOME at one.")


def check_java() -> str:
    """The `java -version` line of the Java TorchServe will run; ServerError unless >= 17."""
    return find_java().version


def instance_env(run_dir: Path) -> dict:
    """The environment TorchServe runs in from `run_dir`: its own TMPDIR (pid file, worker
    sockets, unpacked archives), its logs folder, and the JAVA_HOME of the Java find_java chose."""
    tmp = run_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TS_CONFIG_FILE"}
    env.update(TMPDIR=str(tmp), TEMP=str(tmp), LOG_LOCATION=str(run_dir / "logs"),
               METRICS_LOCATION=str(run_dir / "logs"))
    try:  # TorchServe's launcher runs $JAVA_HOME/bin/java when JAVA_HOME is set: the one find_java chose
        env["JAVA_HOME"] = find_java().home
    except ServerError:
        pass  # start() has already refused; `torchserve --stop` needs no Java
    return env


def _torchserve() -> str:
    exe = shutil.which("torchserve", path=str(Path(sys.executable).parent)) or shutil.which("torchserve")
    if exe is None:
        raise ServerError("torchserve not found (run `make setup`)")
    return exe


def read_keys(run_dir: Path) -> dict:
    """{"inference": key, "management": key, "API": key} from <run_dir>/key_file.json."""
    data = json.loads((Path(run_dir) / KEY_FILE).read_text())
    return {kind: entry["key"] for kind, entry in data.items() if isinstance(entry, dict) and "key" in entry}


def _get(url: str, key: str | None, timeout: float = 2.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def management_key(run_dir: Path) -> str | None:
    """The management key of the instance run from `run_dir`; None when it runs with token
    authorization off (a cluster replica, deploy/replica.py: no key file is written)."""
    if not (Path(run_dir) / KEY_FILE).is_file() and _token_auth_off(run_dir):
        return None
    return read_keys(run_dir)["management"]


def _token_auth_off(run_dir: Path) -> bool:
    try:
        text = (Path(run_dir) / "config.properties").read_text()
    except OSError:
        return False
    return re.search(r"^disable_token_authorization=true\s*$", text, re.MULTILINE) is not None


def ready_workers(run_dir: Path, ports: Ports, model: str) -> tuple[int, int]:
    """(READY workers, expected workers) of `model`, asked of the management API; (0, 0) when
    TorchServe answers that it has no such model."""
    status, body = _get(f"http://127.0.0.1:{ports.management}/models/{model}", management_key(run_dir))
    if status == 404:
        return 0, 0
    if status != 200:
        return 0, 1
    info = json.loads(body)[0]
    workers = info.get("workers") or []
    expected = max(1, int(info.get("minWorkers") or 1))
    return sum(w.get("status") == "READY" for w in workers), expected


def is_ready(run_dir: Path, ports: Ports, model: str) -> bool:
    ready, expected = ready_workers(run_dir, ports, model)
    return expected > 0 and ready >= expected


def instance_pid(run_dir: Path) -> int | None:
    """The pid of the Java frontend started from `run_dir` (its pid file), or None."""
    try:
        return int((run_dir / "tmp" / ".model_server.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def check_archives(model_store: Path, models: tuple[str, ...]) -> None:
    """Each archive starts the handler in-process (serve.archive.check_archive), or ServerError."""
    from core.errors import ArtifactError
    from serve.archive import check_archive

    for m in models:
        try:
            check_archive(model_store / contract.archive(m))
        except ArtifactError as exc:
            raise ServerError(f"refusing to start TorchServe: {exc}") from None


def launch(run_dir: str | Path, model_store: str | Path, ports: Ports, models: tuple[str, ...] = MODELS,
           properties: Mapping[str, object] | None = None) -> dict[str, int]:
    """Write <run_dir>/config.properties (the shipped one, plus `properties`) and start TorchServe
    in the background from `run_dir`, serving `models` (none: the frontend alone). Returns at
    once, with the log sizes before it started (where `start` reads the failure reasons from);
    no check and no wait: `start` is the whole thing."""
    run_dir, model_store = Path(run_dir).resolve(), Path(model_store).resolve()
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    since = log_sizes(run_dir)
    (run_dir / KEY_FILE).unlink(missing_ok=True)
    config = run_dir / "config.properties"
    config.write_text(render_config(model_store, ports, properties))
    env = instance_env(run_dir)
    with open(run_dir / "logs" / "stdout.log", "ab") as log:  # Java inherits it: never a pipe
        subprocess.run(torchserve_command(config, model_store, models), cwd=run_dir, env=env, stdout=log,
                       stderr=subprocess.STDOUT, check=True, start_new_session=True)
    return since


def torchserve_command(config: Path, model_store: Path, models: tuple[str, ...] = MODELS,
                       foreground: bool = False) -> list[str]:
    """The `torchserve --start` command line for `config` (foreground: it returns only when the
    Java frontend exits, what a container's supervisor runs: deploy/replica.py)."""
    return [_torchserve(), "--start", *(["--foreground"] if foreground else []), "--ncs",
            "--ts-config", str(config), "--model-store", str(model_store),
            *(["--models", *[f"{m}={contract.archive(m)}" for m in models]] if models else [])]


def start(run_dir: str | Path, model_store: str | Path, ports: Ports | None = None,
          models: tuple[str, ...] = MODELS, timeout: float = 120.0, check: bool = True,
          properties: Mapping[str, object] | None = None) -> None:
    """Start TorchServe and wait until every model has all its workers READY (with no models:
    until the frontend is up).

    `check`: first start the handler on each archive in-process (a damaged or mismatched
    archive is refused in about a second, before TorchServe starts). `properties`: extra
    config.properties for this instance (serve.config_properties.render_config)."""
    run_dir, model_store = Path(run_dir).resolve(), Path(model_store).resolve()
    ports = ports or Ports()
    check_java()
    missing = [m for m in models if not (model_store / contract.archive(m)).is_file()]
    if missing:
        raise ServerError(f"{model_store}: missing {', '.join(contract.archive(m) for m in missing)} (run `make archive`)")
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_alive(instance_pid(run_dir)):
        raise ServerError(f"TorchServe already runs from {run_dir} (pid {instance_pid(run_dir)}): `make stop` first")
    if check:
        check_archives(model_store, models)
    since = launch(run_dir, model_store, ports, models, properties)
    deadline = time.monotonic() + timeout
    pending = list(models)
    up = bool(models)  # with models, their READY workers are the readiness
    while pending or not up:
        if not is_alive(instance_pid(run_dir)):
            raise ServerError(f"TorchServe exited during start-up\n{log_tail(run_dir)}")
        if time.monotonic() > deadline:
            stop(run_dir)
            raise ServerError(f"models {pending} not READY after {timeout:.0f} s\n{log_tail(run_dir)}" if pending
                              else f"TorchServe not up after {timeout:.0f} s\n{log_tail(run_dir)}")
        if not up:
            up = any(FRONTEND_STARTED in line for line in new_log_lines(run_dir, "stdout.log", since))
        if pending and (run_dir / KEY_FILE).is_file():
            try:
                still = []
                for m in pending:
                    ready, expected = ready_workers(run_dir, ports, m)
                    if expected and ready >= expected:
                        continue
                    # the management API answers only after the initial models were loaded
                    failure = startup_failure(run_dir, m, since, registered=expected > 0)
                    if failure:
                        stop(run_dir)
                        raise ServerError(f"{failure}\n(logs: {run_dir / 'logs'}; TorchServe stopped)")
                    still.append(m)
                pending = still
            except (OSError, ValueError, KeyError, IndexError):
                pass
        if pending or not up:
            time.sleep(0.25)


def stop(run_dir: str | Path, timeout: float = 30.0) -> bool:
    """Stop the instance started from `run_dir`; True if one was running."""
    run_dir = Path(run_dir).resolve()
    pid = instance_pid(run_dir)
    if not is_alive(pid):
        return False
    subprocess.run([_torchserve(), "--stop"], check=False, cwd=run_dir, env=instance_env(run_dir),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_alive(pid):
        os.kill(pid, signal.SIGKILL)
    (run_dir / KEY_FILE).unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Start or stop TorchServe with the CharRNN archives.")
    p.add_argument("action", choices=("start", "stop", "check-java"))
    p.add_argument("--dir", default=contract.default_path("serve"), help="working directory of the instance")
    p.add_argument("--model-store", default=contract.default_path(contract.MODEL_STORE))
    p.add_argument("--inference-port", type=int, default=8080)
    p.add_argument("--management-port", type=int, default=8081)
    p.add_argument("--metrics-port", type=int, default=8082)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for READY workers")
    p.add_argument("--no-check", action="store_true",
                   help="skip the in-process check of the archives before starting")
    args = p.parse_args(argv)
    ports = Ports(args.inference_port, args.management_port, args.metrics_port)
    try:
        if args.action == "check-java":
            print(check_java())
        elif args.action == "start":
            start(args.dir, args.model_store, ports, timeout=args.timeout, check=not args.no_check)
            run_dir = Path(args.dir)
            print(f"TorchServe is up (workers READY), serving {', '.join(MODELS)} from {run_dir}/\n"
                  f"  inference:  http://127.0.0.1:{ports.inference}/predictions/charrnn"
                  f"  and  /predictions/charrnn_session\n"
                  f"  management: http://127.0.0.1:{ports.management}   metrics: http://127.0.0.1:{ports.metrics}/metrics\n"
                  f"  token:      TOKEN=$(python3 -c \"import json; print(json.load(open('{run_dir}/{KEY_FILE}'))['inference']['key'])\")\n"
                  f"  try:        curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
                  f"-d '{{\"prefix\": \"L\"}}' http://127.0.0.1:{ports.inference}/predictions/charrnn\n"
                  f"  logs:       {run_dir}/logs/   stop: make stop")
        else:
            print("TorchServe stopped." if stop(args.dir) else f"No TorchServe running from {args.dir}.")
    except ServerError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
