"""Senders for the CLI worker tests (imported by ``--sender _senders:...``)."""

from __future__ import annotations

import sys
import time
from typing import Any


def slow(delivery: Any) -> str:
    """Take 0.3 s per message and say so on stderr, so a test can signal mid-run."""
    print(f"sending {delivery.message_id}", file=sys.stderr, flush=True)
    time.sleep(0.3)
    return f"slow-{delivery.idempotency_key}"


def failing(delivery: Any) -> str:
    """Fail every send for good."""
    from nsn_store.worker._senders import PermanentSendError

    raise PermanentSendError("no such number")
