"""The secure config.properties of a TorchServe instance, and the ports it names.

Loopback-only addresses, token authorization on, the model register/unregister API off,
allowed_urls restricted to the model store (docs/serving.md). `extra` properties are for a
caller's own instance (the bench's sweep, tests): a property the shipped file sets is replaced
where it stands, a new one is appended under a comment saying it is not the shipped
configuration.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ports:
    inference: int = 8080
    management: int = 8081
    metrics: int = 8082
    # TorchServe always starts its gRPC APIs too; 0: a free loopback port picked at start (their
    # fixed defaults 7070/7071 made a second instance on the machine die at start-up)
    grpc_inference: int = 0
    grpc_management: int = 0


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (all sockets held open until every port is chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


# a property name as TorchServe reads them (e.g. enable_model_api, vmargs, token_expiration_min)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.]*")


def _shipped(model_store: Path, ports: Ports) -> str:
    store = model_store.resolve()
    grpc_inference, grpc_management = ports.grpc_inference or free_port(), ports.grpc_management or free_port()
    return f"""\
# Written by `python -m serve.server start` (make serve); see README.md "Serving".
# Loopback only: nothing here is reachable from another machine.
inference_address=http://127.0.0.1:{ports.inference}
management_address=http://127.0.0.1:{ports.management}
metrics_address=http://127.0.0.1:{ports.metrics}
# TorchServe always starts its gRPC APIs as well (unused here): loopback, on ports of this
# instance's own, so that a second instance on the machine does not fail on 7070/7071.
grpc_inference_address=127.0.0.1
grpc_management_address=127.0.0.1
grpc_inference_port={grpc_inference}
grpc_management_port={grpc_management}
# Token authorization stays ON: every inference/management call needs
# "Authorization: Bearer <key>" from key_file.json beside this file.
disable_token_authorization=false
# The model register/unregister API stays OFF (no loading archives from URLs at run time).
enable_model_api=false
# Only archives inside the model store may ever be loaded (ShellTorch SSRF, CVE-2023-43654).
allowed_urls=file://{store}/[^/]*[.]mar
model_store={store}
# Hand the handler raw request bytes: it parses them strictly itself (NaN/Infinity refused).
decode_input_request=false
# Bodies are a few dozen bytes; refuse big ones in the frontend (413).
max_request_size=65536
default_response_timeout=30
# No per-minute system-metrics subprocess competing with the workers for the cores.
disable_system_metrics=true
async_logging=true
install_py_dep_per_model=false
"""


def render_config(model_store: Path, ports: Ports, extra: Mapping[str, object] | None = None) -> str:
    """config.properties for `model_store` on `ports`: the shipped properties, with `extra`
    (name -> value) replacing the shipped value of a name it shares and appended otherwise."""
    text = _shipped(model_store, ports)
    added = []
    for name, value in (extra or {}).items():
        value = str(value).lower() if isinstance(value, bool) else str(value)
        if not _NAME.fullmatch(name) or any(c in value for c in "\r\n\\"):
            raise ValueError(f"config.properties: refusing property {name!r}={value!r} (a name of letters, "
                             "digits, '_' and '.'; a value of one line without backslashes)")
        line = f"{name}={value}"
        shipped = re.search(rf"^{re.escape(name)}=(.*)$", text, flags=re.MULTILINE)
        if shipped is None:
            added.append(line)
        else:
            text = (text[:shipped.start()] + f"# Changed for this instance by its caller (shipped: "
                    f"{shipped.group(1)}):\n{line}" + text[shipped.end():])
    if added:
        text += "# Set for this instance by its caller (not the shipped configuration):\n"
        text += "".join(f"{line}\n" for line in added)
    return text
