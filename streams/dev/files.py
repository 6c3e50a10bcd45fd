"""Where a running ``continuity dev`` leaves what other commands need to find it."""

from __future__ import annotations

from pathlib import Path

# The state directory of ``continuity dev`` (``--state-dir``, CONTINUITY_STATE_DIR).
DEFAULT_STATE_DIR = Path(".continuity")
# The addresses of the running stack (broker, Redis, gateway), as JSON.
DEV_FILE = "dev.json"
# The gateway's token key (mode 0600, next to dev.json), so ``continuity token`` works.
DEV_SECRET_FILE = "auth-secret"
