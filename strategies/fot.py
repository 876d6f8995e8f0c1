"""Federated Orthogonal Training (FOT) on Flower's Message API."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

import fedcl.keys as keys
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


@dataclass
class LocalSums:
    """Running float64 sums of GPSE statistics (one task's sketches, ``n_i r_i`` and ``n_i``), and their bytes."""

    sketches: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    nbytes: int = 0
    clients: int = 0  # how many replies were summed (DP-GPSE's release size)

    def add(self, records: list[tuple[ArrayRecord, MetricRecord]]) -> None:
        """Add replies' records (already in canonical order) to the sums."""
        self.clients += len(records)
        for name, arr in sum_arrays(r for r, _ in records).items():
            self.sketches[name] = self.sketches[name] + arr if name in self.sketches else arr
        for name, v in sum_metrics(m for _, m in records).items():
            self.stats[name] = self.stats.get(name, 0.0) + v
        self.nbytes += sum(r.count_bytes() for r, _ in records)

    def state_dict(self) -> dict[str, Any]:
        return {"sketches": self.sketches, "stats": self.stats, "nbytes": self.nbytes, "clients": self.clients}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LocalSums:
        return cls(dict(state["sketches"]), dict(state["stats"]), int(state["nbytes"]), int(state["clients"]))


def _one_layout(contents: list[tuple[int, RecordDict]], rejected: dict[int, str], layout: Any = None) -> set[int]:
    """The clients whose sketch layout is ``layout`` (else the majority's); the others go into ``rejected``.

    The sketches are summed: one reply with other layer names or shapes would break the sum.
    """
    layout = layout if layout is not None else gpse.majority_signature([content for _, content in contents])
    kept = set()
    for c, content in contents:
        if gpse.signature(content) == layout:
            kept.add(c)
        else:
            rejected[c] = "sketch names/shapes differ from the other clients'"
            log.warning("gpse: client %d rejected: %s", c, rejected[c])
    return kept


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

    The official code (``FedML/fedml_api/distributed/fedavg_seq_cont``) makes choices the
    paper leaves open; each is an option: ``gpse_model=local`` (the clients sampled in
    the task's last round sketch their locally trained models right after training,
    ``FedAvgClientManager.__train`` / ``FedAVGTrainer.train``; the bases then travel with
    that round's train messages and the sketches with its replies) instead of every
    client of the task sketching the final global model; ``gpse_dropout`` (activations
    with dropout on, ``trainer/mnist_trainer.py``); ``min_new_directions=1`` (one direction
    per layer and task even when ``eps' <= 0``, ``FedAVGAggregator.expand_orth_set``).

    Served deletion requests (unlearning) reach GPSE through FedAvg's exclusions: an
    excluded client is never asked, and the forgotten classes travel in the query so
    no client sketches them.

    Parameters
    ----------
    cfg : Config
        The run config; ``cfg.strategy`` is a :class:`~fedcl.config.schema.FOTStrategy`:
        ``eps`` (energy threshold; paper: 0.96 IID, 0.94 non-IID), ``d_eps`` (increment
        per task), ``sketch_factor`` (each sketch has ``sketch_factor * d`` columns),
        ``gpse_max_samples`` (local samples per client used for GPSE), ``gpse_model``,
        ``gpse_dropout`` and ``min_new_directions``, besides FedAvg's keys.
    **kwargs
        :class:`~strategies.fedavg.FCLFedAvg` arguments.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        st = self.cfg.strategy
        assert isinstance(st, FOTStrategy)
        self.fot = FOTState(bases={}, eps=st.eps, d_eps=st.d_eps, min_new=st.min_new_directions)
        self.gpse_max_samples = st.gpse_max_samples
        self.local_gpse = st.gpse_model == "local"
        self._pending: dict[int, LocalSums] = {}  # gpse_model=local: task -> summed sketches of its last rounds
        self._round_start: ArrayRecord | None = None
        self.gpse_seconds = 0.0
        self.projection_seconds = 0.0
        self.sketch_bytes = 0
        self.gpse_faults = RoundFaults()  # the last GPSE query's failed / rejected clients

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """FedAvg's messages; remember W for the projection of this round's update.

        ``gpse_model=local``: a client in its last round of a task also gets the bases (it
        sketches its residual against them right after training).
        """
        self._round_start = arrays
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if self.local_gpse:
            for m in messages:
                if m.content[keys.CONFIG][keys.LAST_ROUND_OF_TASK]:  # type: ignore[index]
                    gpse.with_bases(m.content, self.fot.bases)
                    self.bytes_down += m.content[gpse.BASES].count_bytes()  # type: ignore[union-attr]
        return messages

    def aggregate_extras(
        self, server_round: int, arrays: ArrayRecord, replies: list[Message], extras: list[dict[str, Any]]
    ) -> ArrayRecord:
        """FedProject: W <- W - (Delta projected orthogonally to the bases); keep local GPSE sketches."""
        if self.local_gpse:
            self._keep_local_sketches(server_round, extras)
        if not self.fot.bases or self._round_start is None:
            return arrays
        t0 = time.perf_counter()
        projected = self.fot.project(self._round_start.to_torch_state_dict(), arrays.to_torch_state_dict())
        self.projection_seconds += time.perf_counter() - t0
        return array_record(projected)

    def on_task_end(self, server_round: int, task_id: int, arrays: ArrayRecord, grid: Grid) -> ArrayRecord:
        """GPSE: sum the sketches and ratios of the task's clients, grow the bases."""
        t0 = time.perf_counter()
        if self.local_gpse:
            sums = self._pending.pop(task_id, None)
            if sums is None:
                raise RoundError(f"FOT: no client of the last round of task {task_id} sent a sound GPSE sketch "
                                 "(strategy.gpse_model=local); the newest checkpoint is intact: fix the clients "
                                 "and continue with resume=<run folder>")
            clients = sums.clients
        else:
            sums = self._gpse_sums(server_round, task_id, arrays, grid)
            self.bytes_up += sums.nbytes
            clients = sums.clients
        self.sketch_bytes += sums.nbytes
        # the server needs only sums (replies in canonical order, float64: strategies/aggregation.py)
        ratios, total = gpse.split_stats(sums.stats)
        released = GpseSums(sums.sketches, ratios, total)
        if isinstance(self.averager, PrivateAveraging):  # DP-GPSE: noised sums, one release in the accountant
            released = self.averager.release_gpse(task_id, released, clients, self.gpse_max_samples)
        self.fot.update_bases(released.sketches, released.ratios, released.total)
        self.gpse_seconds += time.perf_counter() - t0
        return arrays

    def _keep_local_sketches(self, server_round: int, extras: list[dict[str, Any]]) -> None:
        """Sum (canonical order, float64) the GPSE records of this round's replies into their task's pending sums."""
        found: list[tuple[int, RecordDict]] = []
        for c, extra in zip(self.round_faults.accepted, extras, strict=True):  # the sound replies' clients, in order
            content = gpse.local_records(extra)
            reason = None if content is None else gpse.check_reply(content, self.validator.count_reason)
            if content is not None and reason is None:
                found.append((c, content))
            elif reason:
                self.gpse_faults.rejected[c] = reason
                log.warning("gpse: client %d rejected: %s", c, reason)
        if not found:
            return
        kept = _one_layout(found, self.gpse_faults.rejected)
        by_task: dict[int, list[tuple[ArrayRecord, MetricRecord]]] = {}
        for c, content in found:
            if c not in kept:
                continue
            task = self.schedule.task_at(server_round, c)
            assert task is not None
            by_task.setdefault(task, []).append(gpse.content_records(content))
        for task, records in by_task.items():
            self._pending.setdefault(task, LocalSums()).add(records)

    def _gpse_sums(self, server_round: int, task_id: int, arrays: ArrayRecord, grid: Grid) -> LocalSums:
        """The summed sound GPSE replies of the clients that trained ``task_id`` (broken ones dropped, counted).

        Asked a round's worth of clients at a time (``federation.clients_per_round``; all at once without it),
        each batch added to the running sums before the next is sent: the server never holds more queries and
        sketches than a training round's (10,000 clients asked at once held 22 GiB). The batches are fixed by
        the client ids, so the sums are the same whatever order the replies arrive in.
        """
        # clients of served deletion requests are never asked; forgotten classes are never sketched
        clients = [c for c in range(self.num_clients)
                   if self.schedule.task_at(server_round, c) == task_id and c not in self._excluded]
        forget = self._client_config.get(keys.FORGET_CLASSES)
        extra = {keys.FORGET_CLASSES: list(forget)} if forget else {}
        nodes = self.wait_for_nodes(grid)
        size = self.clients_per_round or max(len(clients), 1)
        sums, self.gpse_faults, layout = LocalSums(), RoundFaults(), None
        for i in range(0, len(clients), size):
            messages = [
                gpse.gpse_query(arrays, query_config(self.config_json, server_round, c, task_id, **extra),
                                self.fot.bases, self.node_for(c, nodes))
                for c in clients[i:i + size]
            ]
            replies, faults, layout = self._ask_gpse(grid, messages, layout)
            sums.add([gpse.reply_records(r) for r in replies])
            self.gpse_faults.extend(faults)
        if not sums.clients:
            raise RoundError(
                f"FOT: no client gave a sound GPSE reply at the end of task {task_id} "
                f"({self.gpse_faults.as_row()['fault_reasons']}); the newest checkpoint is intact: fix the "
                "clients and continue with resume=<run folder>"
            )
        return sums

    def _ask_gpse(self, grid: Grid, messages: list[Message],
                  layout: Any = None) -> tuple[list[Message], RoundFaults, Any]:
        """One batch of GPSE queries: its sound replies, its faults and the sketch layout they agree on."""
        if messages:
            self.bytes_down += sum(r.count_bytes() for r in messages[0].content.array_records.values()) * len(messages)
        received = grid.send_and_receive(messages, timeout=self.reply_timeout_s)
        # failed, broken or inconsistent sketches are dropped: one NaN would poison every later basis
        replies, faults = self._split_gpse(messages, list(received), layout)
        if layout is None and replies:
            layout = gpse.signature(replies[0].content)
        return replies, faults, layout

    def _split_gpse(self, sent: list[Message], received: list[Message],
                    layout: Any = None) -> tuple[list[Message], RoundFaults]:
        """The sound GPSE replies (sketch layouts agreeing with ``layout``, else the majority) and the faults."""
        good, faults = self.validator.split(
            "gpse", sent, received, lambda content: gpse.check_reply(content, self.validator.count_reason))
        if len(good) < 2 and layout is None:
            return good, faults
        # later batches must match the layout of the first batch's majority
        kept = _one_layout(list(zip(faults.accepted, (r.content for r in good), strict=True)), faults.rejected, layout)
        pairs = [(c, r) for c, r in zip(faults.accepted, good, strict=True) if c in kept]
        faults.accepted = [c for c, _ in pairs]
        return [r for _, r in pairs], faults

    def subspace_bases(self) -> dict[str, torch.Tensor]:
        """The global bases (unlearning compares them with its oracle's)."""
        return dict(self.fot.bases)

    def occupancy(self) -> dict[str, Any]:
        """Per layer, the basis after the newest GPSE: dimension, input dimension, share, ``eps'`` used."""
        return dict(self.fot.growth[-1]["layers"]) if self.fot.growth else {}

    def state_dict(self) -> dict[str, Any]:
        """FedAvg counters + bases, threshold and FOT timings."""
        return {
            **super().state_dict(),
            "fot": self.fot.state_dict(),
            "pending_gpse": {t: p.state_dict() for t, p in self._pending.items()},
            "basis_dims": self.fot.basis_dims(),
            "gpse_seconds": self.gpse_seconds,
            "projection_seconds": self.projection_seconds,
            "sketch_bytes": self.sketch_bytes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(state)
        self.fot.load_state_dict(state["fot"])
        self._pending = {int(t): LocalSums.from_state(p) for t, p in state["pending_gpse"].items()}
        self.gpse_seconds = float(state["gpse_seconds"])
        self.projection_seconds = float(state["projection_seconds"])
        self.sketch_bytes = int(state["sketch_bytes"])

