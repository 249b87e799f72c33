"""Where Debian's Chromium is, and how to start it here: one home for the tests and bench.web.

Playwright drives this binary (executable_path): it never downloads a browser of its own. As
root, Chromium needs --no-sandbox; there is no GPU."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

INSTALL = "apt-get update && apt-get install -y chromium (Debian's package; run as root)"
ARGS = ["--no-sandbox", "--disable-gpu"]


def chromium_binary() -> str | None:
    """$CHROMIUM, /usr/bin/chromium or `chromium` on the PATH; None when there is none."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None
