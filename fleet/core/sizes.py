"""A byte count for people: ``13.5 MB``. One rule for the CLI's tables and the console."""

from __future__ import annotations


def format_size(n: int | None, sep: str = "") -> str:
    """``n`` bytes in B, KB, MB or GB (powers of 1024); "-" when unknown. ``sep`` goes
    between the number and the unit (the CLI's narrow columns use none)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{value:.0f}{sep}{unit}" if unit == "B" else f"{value:.1f}{sep}{unit}"
