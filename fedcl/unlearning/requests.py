"""Deletion requests: events of the continual run (``unlearning.requests``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedcl.errors import ConfigError

KINDS = ("client", "class")


@dataclass(frozen=True)
class Request:
    """One deletion request, served at the end of server round ``round``.

    Parameters
    ----------
    round : int
        The server round after whose aggregation the request is served (0 = before
        training: the data is never used, the "never saw it" run).
    kind : str
        ``"client"`` (a client leaves and its data is forgotten) or ``"class"``
        (a label is dropped from every client's stream).
    target : int
        The client id or the class label.
    """

    round: int
    kind: str
    target: int

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "kind": self.kind, "target": self.target}


def parse_requests(
    raw: Any, total_rounds: int | None = None, num_clients: int | None = None, num_classes: int | None = None
) -> list[Request]:
    """Validate ``unlearning.requests`` and return them sorted by round.

    Parameters
    ----------
    raw : Any
        The config value: a list of ``{round, kind, target}`` mappings.
    total_rounds, num_clients, num_classes : int | None
        Bounds checked when known (``None`` skips the check).

    Raises
    ------
    ConfigError
        Naming ``unlearning.requests[i].<field>``, the value and what is allowed.
    """
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise ConfigError("unlearning.requests", raw, "a list of {round, kind, target} mappings")
    out: list[Request] = []
    for i, item in enumerate(raw):
        key = f"unlearning.requests[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(key, item, "a mapping {round: <int>, kind: client|class, target: <int>}")
        extra = set(item) - {"round", "kind", "target"}
        if extra:
            raise ConfigError(key, item, f"only the keys round, kind, target (unknown: {sorted(extra)})")
        rnd, kind, target = item.get("round"), item.get("kind"), item.get("target")
        hi = f", at most {total_rounds} (the run's last round)" if total_rounds is not None else ""
        if not isinstance(rnd, int) or isinstance(rnd, bool) or rnd < 0 or (
                total_rounds is not None and rnd > total_rounds):
            raise ConfigError(f"{key}.round", rnd, f"an integer >= 0 (0 = never trained on){hi}")
        if kind not in KINDS:
            raise ConfigError(f"{key}.kind", kind, f"one of {list(KINDS)}")
        bound = num_clients if kind == "client" else num_classes
        what = "a client id in [0, num_clients)" if kind == "client" else "a class label in [0, num_classes)"
        if not isinstance(target, int) or isinstance(target, bool) or target < 0 or (
                bound is not None and target >= bound):
            raise ConfigError(f"{key}.target", target, what + (f" = [0, {bound})" if bound is not None else ""))
        out.append(Request(int(rnd), str(kind), int(target)))
    seen: set[tuple[str, int]] = set()
    for r in out:
        if (r.kind, r.target) in seen:
            raise ConfigError("unlearning.requests", raw, f"{r.kind} {r.target} is requested twice; keep one request")
        seen.add((r.kind, r.target))
    if num_clients is not None:
        gone = {r.target for r in out if r.kind == "client"}
        if len(gone) >= num_clients:
            raise ConfigError("unlearning.requests", raw, "at least one client must remain in the federation")
    return sorted(out, key=lambda r: (r.round, r.kind, r.target))
