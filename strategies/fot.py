"""Federated Orthogonal Training (FOT) on Flower's Message API."""

from __future__ import annotations

import logging
import time
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from fedcl.client.instruction import query_config
from fedcl.config.schema import FOTStrategy
from fedcl.errors import RoundError
from fedcl.fot import protocol as gpse
from fedcl.fot.server import FOTState
from fedcl.privacy.gpse import GpseSums
from fedcl.records import array_record
from strategies.aggregation import sum_arrays, sum_metrics
from strategies.fedavg import FCLFedAvg
from strategies.privacy import PrivateAveraging
from strategies.round_faults import RoundFaults

log = logging.getLogger("fedcl")


class FOT(FCLFedAvg):
    """Federated Orthogonal Training: FedAvg projected away from old tasks' global subspace.

    Bakman et al., "Federated Orthogonal Training: Mitigating Global Catastrophic
    Forgetting in Continual Federated Learning", ICLR 2024. Every round the
    aggregated update Delta = W - mean_i W_i of each projected layer (linear and
    conv weights, conv viewed as (out, in*kh*kw); biases, norms and task heads are
    not projected) is made orthogonal to the stored basis U_l:
    Delta_l <- Delta_l - Delta_l U_l U_l^T, then W <- W - Delta (FedProject).
    After the last round of each task the server runs Global Principal Subspace
    Extraction (GPSE): the clients that trained the task compute, with the final
    global model, a random sketch Y_i = R_i Omega_i of their residual layer inputs
    and their residual ratio (:mod:`fedcl.fot.client`); the server only needs the
    sums, grows each basis by the threshold rule (:mod:`fedcl.fot.server`) and
    raises ``eps`` by ``d_eps``. The GPSE messages are :mod:`fedcl.fot.protocol`.

    Parameters
    ----------
    cfg : Config
        The run config; ``cfg.strategy`` is a :class:`~fedcl.config.schema.FOTStrategy`:
        ``eps`` (energy threshold; paper: 0.96 IID, 0.94 non-IID), ``d_eps`` (increment
        per task), ``sketch_factor`` (each sketch has ``sketch_factor * d`` columns) and
        ``gpse_max_samples`` (local samples per client used for GPSE), besides FedAvg's keys.
    **kwargs
        :class:`~strategies.fedavg.FCLFedAvg` arguments.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        st = self.cfg.strategy
        assert isinstance(st, FOTStrategy)
        self.fot = FOTState(bases={}, eps=st.eps, d_eps=st.d_eps)
        self.gpse_max_samples = st.gpse_max_samples
        self._round_start: ArrayRecord | None = None
        self.gpse_seconds = 0.0
        self.projection_seconds = 0.0
        self.sketch_bytes = 0
        self.gpse_faults = RoundFaults()  # the last GPSE query's failed / rejected clients

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """FedAvg's messages; remember W for the projection of this round's update."""
        self._round_start = arrays
        return list(super().configure_train(server_round, arrays, config, grid))

    def aggregate_extras(
        self, server_round: int, arrays: ArrayRecord, replies: list[Message], extras: list[dict[str, Any]]
    ) -> ArrayRecord:
        """FedProject: W <- W - (Delta projected orthogonally to the bases)."""
        if not self.fot.bases or self._round_start is None:
            return arrays
        t0 = time.perf_counter()
        projected = self.fot.project(self._round_start.to_torch_state_dict(), arrays.to_torch_state_dict())
        self.projection_seconds += time.perf_counter() - t0
        return array_record(projected)

    def on_task_end(self, server_round: int, task_id: int, arrays: ArrayRecord, grid: Grid) -> ArrayRecord:
        """GPSE: sum the sketches and ratios of the task's clients, grow the bases."""
        t0 = time.perf_counter()
        replies = self._ask_gpse(server_round, task_id, arrays, grid)
        sketches = [gpse.reply_records(r)[0] for r in replies]
        nbytes = sum(s.count_bytes() for s in sketches)
        self.bytes_up += nbytes
        self.sketch_bytes += nbytes
        # the server needs only sums (replies in canonical order, float64: strategies/aggregation.py)
        ratios, total = gpse.split_stats(sum_metrics(gpse.reply_records(r)[1] for r in replies))
        sums = GpseSums(sum_arrays(sketches), ratios, total)
        if isinstance(self.averager, PrivateAveraging):  # DP-GPSE: noised sums, one release in the accountant
            sums = self.averager.release_gpse(task_id, sums, len(replies), self.gpse_max_samples)
        self.fot.update_bases(sums.sketches, sums.ratios, sums.total)
        self.gpse_seconds += time.perf_counter() - t0
        return arrays

    def _ask_gpse(self, server_round: int, task_id: int, arrays: ArrayRecord, grid: Grid) -> list[Message]:
        """The sound GPSE replies of the clients that trained ``task_id`` (broken ones dropped, counted)."""
        clients = [c for c in range(self.num_clients) if self.schedule.task_at(server_round, c) == task_id]
        nodes = self.wait_for_nodes(grid)
        messages = [
            gpse.gpse_query(arrays, query_config(self.config_json, server_round, c, task_id), self.fot.bases,
                            self.node_for(c, nodes))
            for c in clients
        ]
        if messages:
            self.bytes_down += sum(r.count_bytes() for r in messages[0].content.array_records.values()) * len(messages)
        received = grid.send_and_receive(messages, timeout=self.reply_timeout_s)
        # failed, broken or inconsistent sketches are dropped: one NaN would poison every later basis
        replies, self.gpse_faults = self._split_gpse(messages, list(received))
        if not replies:
            raise RoundError(
                f"FOT: no client gave a sound GPSE reply at the end of task {task_id} "
                f"({self.gpse_faults.as_row()['fault_reasons']}); the newest checkpoint is intact: fix the "
                "clients and continue with resume=<run folder>"
            )
        return replies

    def _split_gpse(self, sent: list[Message], received: list[Message]) -> tuple[list[Message], RoundFaults]:
        """The sound GPSE replies (sketch layouts agreeing with the majority) and the faults."""
        good, faults = self.validator.split(
            "gpse", sent, received, lambda content: gpse.check_reply(content, self.validator.count_reason))
        if len(good) < 2:
            return good, faults
        # the sketches are summed: one reply with other layer shapes would break the sum
        majority = gpse.majority_signature([r.content for r in good])
        clients, faults.accepted = list(faults.accepted), []
        kept = []
        for c, r in zip(clients, good, strict=True):
            if gpse.signature(r.content) == majority:
                kept.append(r)
                faults.accepted.append(c)
            else:
                faults.rejected[c] = "sketch names/shapes differ from the other clients'"
                log.warning("gpse: client %d rejected: %s", c, faults.rejected[c])
        return kept, faults

    def state_dict(self) -> dict[str, Any]:
        """FedAvg counters + bases, threshold and FOT timings."""
        return {
            **super().state_dict(),
            "fot": self.fot.state_dict(),
            "basis_dims": self.fot.basis_dims(),
            "gpse_seconds": self.gpse_seconds,
            "projection_seconds": self.projection_seconds,
            "sketch_bytes": self.sketch_bytes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(state)
        self.fot.load_state_dict(state["fot"])
        self.gpse_seconds = float(state["gpse_seconds"])
        self.projection_seconds = float(state["projection_seconds"])
        self.sketch_bytes = int(state["sketch_bytes"])

