"""Closed-loop load with `wrk` (Debian's `wrk`, 4.x): keep-alive HTTP/1.1 connections, each
sending its next request as soon as the previous answer arrived, from one C thread.

`make bench-serving` drives TorchServe with it rather than with Python: on two cores the load
generator shares the machine with the server, and wrk spends a fraction of the CPU per request
that an asyncio client does, so the server, not the client, sets the ceiling. A Lua script made
per run (`script`) sends pre-formatted POSTs cycled over the given JSON bodies and prints wrk's own figures as one JSON line (`done`): requests, non-2xx/3xx
answers and socket errors, and latency percentiles from wrk's histogram (microseconds, measured
from a request's write to its answer's last byte).

- `available()`: the `wrk` binary, or WrkMissing saying how to install it.
- `run(url, bodies, token, connections, seconds)`: one run -> `Result`.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

MARK = "WRK_RESULT "  # the line the script's done() prints
PERCENTILES = (50, 90, 99, 99.9)


class WrkMissing(RuntimeError):
    """No wrk on PATH."""


def available() -> str:
    """The path of `wrk`, or WrkMissing with the command that installs it."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing("wrk not found: install it (Debian/Ubuntu: apt-get install -y wrk); "
                         "make bench-serving drives the server with it")
    return path


def _lua_string(text: str) -> str:
    """`text` as a Lua long string literal (any content, no escapes)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def script(path: str, bodies: Sequence[bytes], token: str | None) -> str:
    """The Lua script of one run: POST `path` with each body in turn (JSON, bearer `token`)."""
    if not bodies:
        raise ValueError("no request bodies")
    headers = ['["Content-Type"] = "application/json"']
    if token:
        headers.append(f'["Authorization"] = {_lua_string("Bearer " + token)}')
    quantiles = ", ".join(f'"p{str(q).replace(".", "_")}_us": %d' for q in PERCENTILES)
    values = ", ".join(f"latency:percentile({q})" for q in PERCENTILES)
    return f"""-- written by bench/wrk.py for one run
local bodies = {{{", ".join(_lua_string(b.decode("utf-8")) for b in bodies)}}}
local requests, next_index = {{}}, 0

init = function(args)
  local headers = {{{", ".join(headers)}}}
  for i, body in ipairs(bodies) do
    requests[i] = wrk.format("POST", {_lua_string(path)}, headers, body)
  end
end

request = function()
  next_index = next_index + 1
  return requests[(next_index % #requests) + 1]
end

done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format('{MARK}{{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d, "mean_us": %.1f, "max_us": %d, {quantiles}}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, {values}))
end
"""


@dataclass
class Result:
    """One wrk run. Latencies in milliseconds; `errors`: answers that were not 2xx/3xx plus
    socket errors and timeouts (by kind in `error_kinds`)."""

    connections: int
    seconds: float
    requests: int
    errors: int
    error_kinds: dict = field(default_factory=dict)
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    p999_ms: float = float("nan")
    mean_ms: float = float("nan")
    max_ms: float = float("nan")
    cpu_seconds: float = 0.0  # wrk's own CPU time (user + system)

    @property
    def req_per_s(self) -> float:
        """Successful answers per second."""
        return (self.requests - self.errors) / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        return {"clients": self.connections, "requests": self.requests, "errors": self.errors,
                "statuses": {k: v for k, v in self.error_kinds.items() if v}, "req_per_s": self.req_per_s,
                "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "p99_ms": self.p99_ms, "p999_ms": self.p999_ms,
                "mean_ms": self.mean_ms, "max_ms": self.max_ms, "seconds": self.seconds,
                "load_generator_cpu_ms_per_request": self.cpu_seconds / self.requests * 1e3 if self.requests else float("nan")}


def parse(stdout: str, connections: int) -> Result:
    """The Result from wrk's output (the script's JSON line); ValueError if it is not there."""
    line = next((ln[len(MARK):] for ln in stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise ValueError(f"wrk printed no result line:\n{stdout[-2000:]}")
    d = json.loads(line)
    kinds = {k: d[k] for k in ("status", "connect", "read", "write", "timeout")}
    errors = d["status"] + d["connect"] + d["read"] + d["write"] + d["timeout"]
    return Result(connections=connections, seconds=d["duration_us"] / 1e6, requests=d["requests"],
                  errors=min(errors, d["requests"]) if d["requests"] else errors,
                  error_kinds={("non-2xx/3xx" if k == "status" else f"socket {k}"): v for k, v in kinds.items()},
                  p50_ms=d["p50_us"] / 1e3, p90_ms=d["p90_us"] / 1e3, p99_ms=d["p99_us"] / 1e3,
                  p999_ms=d["p99_9_us"] / 1e3, mean_ms=d["mean_us"] / 1e3, max_ms=d["max_us"] / 1e3)


def run(url: str, bodies: Sequence[bytes], token: str | None, *, connections: int, seconds: float,
        timeout_s: float = 10.0) -> Result:
    """`connections` keep-alive connections from one wrk thread POST `bodies` in turn to `url`
    for `seconds` (whole seconds, at least 1); wrk's CPU time is measured from its rusage."""
    if connections < 1:
        raise ValueError("connections must be >= 1")
    wrk = available()
    parts = urlsplit(url)
    with tempfile.TemporaryDirectory(prefix="charrnn-wrk-") as tmp:
        lua = Path(tmp) / "post.lua"
        lua.write_text(script(parts.path or "/", bodies, token), encoding="utf-8")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        done = subprocess.run([wrk, "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
                               "--timeout", f"{max(1, round(timeout_s))}s", "-s", str(lua),
                               f"{parts.scheme}://{parts.netloc}"],
                              capture_output=True, text=True, check=False, timeout=seconds + timeout_s + 30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}) after {time.monotonic() - started:.1f} s: "
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")
    result = parse(done.stdout, connections)
    result.cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result
