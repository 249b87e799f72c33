"""The request side of the tests' stand-in HTTP servers (asyncio streams, HTTP/1.1 keep-alive)."""

from __future__ import annotations

import asyncio
import json


async def read_json_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], dict] | None:
    """The next request on a connection: (path, headers by lower-case name, JSON body); None when
    the client has closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    return lines[0].split()[1], headers, json.loads(await reader.readexactly(int(headers["content-length"])))
