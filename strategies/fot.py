"""Federated Orthogonal Training (FOT) on Flower's Message API."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from fedcl import keys
from fedcl.errors import RoundError
from fedcl.fot_server import FOTState
from strategies.aggregation import sum_arrays, sum_metrics
from strategies.fedavg import FCLFedAvg
from strategies.round_faults import RoundFaults


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
    and their residual ratio; the server only needs the sums, grows each basis
    by the threshold rule and raises ``eps`` by ``d_eps``.

    Parameters
    ----------
    eps : float, default 0.96
        Energy threshold of the basis growth (paper: 0.96 IID, 0.94 non-IID).
    d_eps : float, default 0.0
        Threshold increment after each task.
    sketch_factor : int, default 1
        Each client's sketch has ``sketch_factor * d`` columns.
    gpse_max_samples : int, default 500
        Local samples per client used for GPSE.
    **kwargs
        :class:`~strategies.fedavg.FCLFedAvg` arguments.
    """

    def __init__(
        self,
        *,
        eps: float = 0.96,
        d_eps: float = 0.0,
        sketch_factor: int = 1,
        gpse_max_samples: int = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fot = FOTState(bases={}, eps=eps, d_eps=d_eps)
        self.sketch_factor = sketch_factor
        self.gpse_max_samples = gpse_max_samples
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
        old = self._round_start.to_torch_state_dict()
        new = arrays.to_torch_state_dict()
        projected = self.fot.project(old, new)
        self.projection_seconds += time.perf_counter() - t0
        return _to_record(projected)

    def on_task_end(self, server_round: int, task_id: int, arrays: ArrayRecord, grid: Grid) -> ArrayRecord:
        """GPSE: sum the clients' sketches and ratios, grow the bases."""
        t0 = time.perf_counter()
        clients = [c for c in range(self.num_clients) if self.schedule.task_at(server_round, c) == task_id]
        nodes = self.wait_for_nodes(grid)
        bases = ArrayRecord({k: Array(v.detach().cpu().numpy().astype(np.float32)) for k, v in self.fot.bases.items()})
        messages = []
        for c in clients:
            rec = ConfigRecord(
                {
                    keys.SERVER_ROUND: server_round,
                    keys.CLIENT_ID: c,
                    keys.TASK_ID: task_id,
                    keys.RUN_CONFIG_JSON: self.config_json,
                }
            )
            content = RecordDict({keys.ARRAYS: arrays, keys.CONFIG: rec, keys.FOT_BASES: bases})
            messages.append(
                Message(content=content, message_type=f"{MessageType.QUERY}.{keys.GPSE}",
                        dst_node_id=self.node_for(c, nodes))
            )
        self.bytes_down += (arrays.count_bytes() + bases.count_bytes()) * len(messages)
        # failed, broken or inconsistent sketches are dropped: one NaN would poison every later basis
        sent = list(messages)
        received = list(grid.send_and_receive(messages, timeout=getattr(self, "reply_timeout", None)))
        replies, self.gpse_faults = self.validator.split_gpse(sent, received)
        if not replies:
            raise RoundError(
                f"FOT: no client gave a sound GPSE reply at the end of task {task_id} "
                f"({self.gpse_faults.as_row()['fault_reasons']}); the newest checkpoint is intact: fix the "
                "clients and continue with resume=<run folder>"
            )
        sketches = [r.content[keys.FOT_SKETCH] for r in replies]
        stats = [r.content[keys.FOT_STATS] for r in replies]
        assert all(isinstance(x, ArrayRecord) for x in sketches) and all(isinstance(x, MetricRecord) for x in stats)
        nbytes = sum(x.count_bytes() for x in sketches)
        self.bytes_up += nbytes
        self.sketch_bytes += nbytes
        # the server needs only sums (replies in canonical order, float64: strategies/aggregation.py)
        sum_sketch = sum_arrays(sketches)  # type: ignore[arg-type]
        summed = sum_metrics(stats)  # type: ignore[arg-type]
        total = summed.get(keys.NUM_EXAMPLES, 0.0)
        sum_ratio = {k.rsplit("/", 1)[0]: v for k, v in summed.items() if k.endswith("/ratio-weighted")}
        self.fot.update_bases(sum_sketch, sum_ratio, total)
        self.gpse_seconds += time.perf_counter() - t0
        return arrays

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
        self.gpse_seconds = float(state.get("gpse_seconds", 0.0))
        self.projection_seconds = float(state.get("projection_seconds", 0.0))
        self.sketch_bytes = int(state.get("sketch_bytes", 0))


def _to_record(state: dict[str, torch.Tensor]) -> ArrayRecord:
    return ArrayRecord({k: Array(v.detach().cpu().numpy()) for k, v in state.items()})
