"""Sum clients' ``sum-<name>`` reply records and broadcast the sums next round (FedCurv's server part)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord

import fedcl.sums as sums
from strategies.aggregation import sum_arrays


class ExtraSums:
    """The server side of "sum these arrays over clients and send the sums back".

    A client reply may carry ArrayRecords named ``sum-<name>`` (:mod:`fedcl.sums`). After each
    round the server adds them element-wise over the round's replies (float64) and keeps
    only these sums; the next round every client receives them under the same record
    names plus a ``sums-meta`` ConfigRecord with the round they came from and the
    number of clients in them, so a client can subtract its own contribution of that
    round. Only sums are needed, so the uplink is compatible with secure aggregation.
    Used by FedCurv (Shoham et al., "Overcoming Forgetting in Federated Learning on
    Non-IID Data", NeurIPS 2019 workshop), whose clients send ``F_i`` and ``F_i * theta_i``.
    """

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, np.ndarray]] = {}
        self.round = -1
        self.clients = 0

    def add_round(self, server_round: int, extras: Iterable[dict[str, Any]]) -> None:
        """Replace the sums by those of this round's replies (kept as they were if no reply has any)."""
        per_name: dict[str, list[ArrayRecord]] = {}
        clients = 0
        for extra in extras:  # the replies' extra records, in canonical order
            found = [(n, r) for n, r in extra.items() if sums.is_sum_record(n, r)]
            for name, rec in found:
                per_name.setdefault(name, []).append(rec)
            clients += int(bool(found))
        if per_name:
            self.sums = {name: sum_arrays(recs) for name, recs in per_name.items()}
            self.round, self.clients = server_round, clients

    def payload(self) -> dict[str, ArrayRecord | ConfigRecord]:
        """Records sent to every client next round (empty before any client sent a sum record)."""
        return sums.payload_records(self.sums, self.round, self.clients) if self.sums else {}

    def state_dict(self) -> dict[str, Any]:
        """For checkpoints (a resumed run sends the same sums)."""
        return {"sums": {n: dict(a) for n, a in self.sums.items()}, "round": self.round, "clients": self.clients}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.sums = {n: {k: np.asarray(v) for k, v in a.items()} for n, a in state.get("sums", {}).items()}
        self.round = int(state.get("round", -1))
        self.clients = int(state.get("clients", 0))
