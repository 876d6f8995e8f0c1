"""What went wrong with the clients of one round: the numbers written to ``metrics.jsonl``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RoundFaults:
    """Failed and rejected clients of one round (or of one GPSE query).

    Attributes
    ----------
    sent : int
        Messages sent (one per logical client).
    accepted : list[int]
        Clients whose reply went into the aggregate.
    failed : dict[int, str]
        Client -> why it gave no usable reply: it raised (Flower's error reply),
        timed out or disappeared (no reply before ``federation.round_timeout_s``).
    rejected : dict[int, str]
        Client -> why its reply was refused (NaN / Inf, wrong shape or dtype,
        missing record, absurd ``num-examples``).
    attempts : int
        Tries the round needed (``1 + retries``).
    discarded_aggregate : bool
        The aggregate itself was not finite and the global model was kept.
    """

    sent: int = 0
    accepted: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    attempts: int = 1
    discarded_aggregate: bool = False

    def extend(self, other: RoundFaults) -> None:
        """Add another batch of the same query (its messages, accepted, failed and rejected clients)."""
        self.sent += other.sent
        self.accepted += other.accepted
        self.failed.update(other.failed)
        self.rejected.update(other.rejected)

    @property
    def num_valid(self) -> int:
        """Replies that were aggregated."""
        return len(self.accepted)

    def as_row(self) -> dict[str, Any]:
        """The ``metrics.jsonl`` columns of this round (ids are logical client ids)."""
        return {
            "failed_clients": len(self.failed),
            "rejected_clients": len(self.rejected),
            "failed_client_ids": sorted(self.failed),
            "rejected_client_ids": sorted(self.rejected),
            "fault_reasons": {str(c): r for c, r in sorted({**self.failed, **self.rejected}.items())},
            "round_attempts": self.attempts,
        }
