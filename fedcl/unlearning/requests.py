"""Deletion requests: events of the continual run (``unlearning.requests``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedcl.errors import ConfigError

KINDS = ("client", "class", "random", "worst")
SAMPLE_KINDS = ("random", "worst")  # sample-level requests: ``target`` is the number of training samples


@dataclass(frozen=True)
class Request:
    """One deletion request, served at the end of server round ``round``.

    Parameters
    ----------
    round : int
        The server round after whose aggregation the request is served (0 = before
        training: the data is never used, the "never saw it" run).
    kind : str
        ``"client"`` (a client leaves and its data is forgotten), ``"class"`` (a
        label is dropped from every client's stream), ``"random"`` (``target``
        training samples drawn uniformly from the seen tasks of the remaining
        clients) or ``"worst"`` (the ``target`` samples that are hardest to unlearn:
        :mod:`fedcl.unlearning.forget_sets`).
    target : int
        The client id, the class label, or the number of samples.
    """

    round: int
    kind: str
    target: int

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "kind": self.kind, "target": self.target}

    @property
    def is_samples(self) -> bool:
        """A sample-level request (its samples are resolved when it is served)."""
        return self.kind in SAMPLE_KINDS


def points(requests: list[Request]) -> list[int]:
    """The distinct request rounds, in order: the points of a sequence of deletion requests."""
    return sorted({r.round for r in requests})


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
    out = [_parse_item(i, item, total_rounds, num_clients, num_classes) for i, item in enumerate(raw)]
    seen: set[tuple[int, str, int]] = set()
    for r in out:
        ident = (r.round if r.is_samples else -1, r.kind, r.target)  # sample requests differ by round
        if ident in seen:
            raise ConfigError("unlearning.requests", raw, f"{r.kind} {r.target} is requested twice; keep one request")
        seen.add(ident)
    if num_clients is not None:
        gone = {r.target for r in out if r.kind == "client"}
        if len(gone) >= num_clients:
            raise ConfigError("unlearning.requests", raw, "at least one client must remain in the federation")
    return sorted(out, key=lambda r: (r.round, r.kind, r.target))


def _parse_item(i: int, item: Any, total_rounds: int | None, num_clients: int | None,
                num_classes: int | None) -> Request:
    """One validated entry of ``unlearning.requests`` (``i``: its position, for the error's key)."""
    key = f"unlearning.requests[{i}]"
    if not isinstance(item, dict):
        raise ConfigError(key, item, "a mapping {round: <int>, kind: client|class|random|worst, target: <int>}")
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
    if kind in SAMPLE_KINDS:
        if not isinstance(target, int) or isinstance(target, bool) or target < 1:
            raise ConfigError(f"{key}.target", target, f"the number of samples to forget (an integer >= 1) "
                              f"for a '{kind}' request")
        if rnd == 0:
            raise ConfigError(f"{key}.round", rnd, f"a round >= 1 for a '{kind}' request (its samples are "
                              "drawn from the tasks seen by then)")
        return Request(int(rnd), str(kind), int(target))
    bound = num_clients if kind == "client" else num_classes
    what = "a client id in [0, num_clients)" if kind == "client" else "a class label in [0, num_classes)"
    if not isinstance(target, int) or isinstance(target, bool) or target < 0 or (
            bound is not None and target >= bound):
        raise ConfigError(f"{key}.target", target, what + (f" = [0, {bound})" if bound is not None else ""))
    return Request(int(rnd), str(kind), int(target))
