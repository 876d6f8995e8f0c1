"""One line per grid job: ``[job 3/8] strategy=fot seed=1 | ACC 0.810 forgetting 0.050 (42 s)``."""

from __future__ import annotations

from typing import Any

from strategies.server.progress import format_duration


def job_line(num: int | None, total: int | None, overrides: list[str], summary: dict[str, Any] | None,
             seconds: float, error: str | None = None) -> str:
    """``[job 3/8] strategy=fot seed=1 | ACC 0.810 forgetting 0.050 (42 s)`` (or ``FAILED: ...``)."""
    n = "?" if num is None else str(num + 1)
    t = "?" if not total else str(total)
    head = f"[job {n}/{t}] {' '.join(overrides) or '(defaults)'}"
    if error is not None:
        first = error.strip().splitlines()[-1] if error.strip() else "unknown error"
        return f"{head} | FAILED: {first[:200]} ({format_duration(seconds)})"
    s = summary or {}

    def f(key: str) -> str:
        v = s.get(key)
        return f"{v:.3f}" if isinstance(v, (int, float)) else "-"

    return f"{head} | ACC {f('acc')} forgetting {f('forgetting')} ({format_duration(seconds)})"
