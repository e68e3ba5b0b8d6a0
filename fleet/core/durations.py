"""Human durations (``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``) for TTLs and ages."""

from __future__ import annotations

import re

from .errors import InvalidArgument

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+)([smhd])")


def parse_duration(text: str) -> int:
    """Seconds in ``text``; raises InvalidArgument on anything else (or zero)."""
    s = text.strip().lower()
    if s.isdigit():
        seconds = int(s)
    else:
        parts = _PART.findall(s)
        if not parts or "".join(n + u for n, u in parts) != s:
            raise InvalidArgument(f"invalid duration {text!r}", "use e.g. 90s, 15m, 2h, 1d, 1h30m")
        seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise InvalidArgument(f"duration must be positive: {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Compact, two significant units at most: ``45s``, ``3m20s``, ``2h5m``, ``3d4h``."""
    s = max(0, int(seconds))
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            rest = (s % size) // subsize
            return f"{s // size}{unit}{rest}{sub}" if rest else f"{s // size}{unit}"
    if s >= 60:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    return f"{s}s"
