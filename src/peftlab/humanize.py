"""Numbers for people: byte sizes and FLOP counts as the report's and inspect's tables show them."""

from __future__ import annotations


def human_bytes(n: float | None) -> str:
    """'18 B', '19.6 MB', '4.5 GB' (powers of 1000, like disk sizes); '-' when unknown."""
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_flops(n: float | None) -> str:
    """'950', '2.1 G', '3.0 P' (powers of 1000, SI prefixes; any count, FLOPs most often); '-' when unknown."""
    if n is None:
        return "-"
    for unit in ("", "k", "M", "G", "T", "P"):
        if abs(n) < 1000:
            return f"{n:.0f}" if unit == "" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} E"
