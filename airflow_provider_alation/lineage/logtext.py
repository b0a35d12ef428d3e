"""Values from events made fit for a log line: control characters escaped, length bounded.

A job name or namespace comes from whoever produced the event; written raw, a ``\\n`` in it would
forge a log record of its own and a megabyte-long name would flood the log.
"""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_CHARS = 300


def printable(value: Any, limit: int = MAX_CHARS) -> str:
    """``value`` as one log-safe line: control characters and lone surrogates escaped, then cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > 4 * limit:
        text = text[: 4 * limit]
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "..."
