"""Stand-ins for the reader in the reading sandbox's child: a message that never finishes
reading, one that kills the process, and the real reader for everything else."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from labintake.reading.plan import plan_message

HANGS = b"HANGS-FOREVER"
KILLS = b"KILLS-THE-READER"


def poisoned_plan_message(message_id: int, raw: bytes | None, *args: Any) -> Any:
    if raw is not None and HANGS in raw:
        while True:  # a reader bug that never returns
            time.sleep(0.05)
    if raw is not None and KILLS in raw:
        os._exit(9)  # the process dies mid-read (as when the kernel kills it for memory)
    return plan_message(message_id, raw, *args)


# What the reading sandbox must not load: the database side and the settings.
HEAVY_PACKAGES = ("sqlalchemy", "sqlmodel", "pydantic_settings", "fastapi", "hl7apy")


def plan_and_modules(message_id: int, raw: bytes | None, *args: Any) -> Any:
    """The real reader's plan, and the heavy packages the child had loaded once it was read."""
    plan = plan_message(message_id, raw, *args)
    loaded = sorted(
        name
        for name in sys.modules
        if name.split(".")[0] in HEAVY_PACKAGES or name.startswith("labintake.models")
    )
    return plan, loaded
