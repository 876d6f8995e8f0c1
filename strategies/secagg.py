"""SecAgg+ on the server: a Grid whose ``send_and_receive`` runs Flower's four SecAgg+ stages (Bell et al., CCS 2020).

No cryptography lives here: the server runs the stages of Flower's ``SecAggPlusWorkflow``
(setup, share keys, collect masked vectors, unmask) and puts fedcl's own per-client
messages (model, config, FOT bases) into the collect-masked-vectors stage instead of
legacy ``FitIns``; the unmasked sum comes back as ``k`` identical replies, each carrying
the aggregate divided by ``k``, so FedAvg's average and FOT's sums are those of the
round's clients and the strategies stay exactly as they are. Quantisation error
(stochastic rounding of Flower's quantiser) is at most one level, ``2 range /
quantization_range``, per client and coordinate.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

import fedcl.keys as keys
from fedcl.config.schema import SecAgg
from fedcl.errors import ConfigError
from fedcl.hooks import RoundHook
from fedcl.privacy.secagg_protocol import LAYOUT, MAX_WEIGHT, SECURED_TYPES, per_reply, unvectorize
from strategies.server.grid import GridWrapper

log = logging.getLogger("fedcl")


class _Proxy:
    def __init__(self, node_id: int) -> None:
        self.node_id = node_id


class _Collector:
    """Stands in for the legacy strategy the workflow talks to: it only keeps the unmasked sum."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes
        self.mean: list[np.ndarray] | None = None
        self.count = 0
        self.layout: dict[str, Any] = {}

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> list[tuple[Any, Any]]:
        from flwr.common import FitIns

        return [(_Proxy(n), FitIns(parameters, {})) for n in self.nodes]

    def aggregate_fit(self, server_round: int, results: list[Any], failures: list[Any]) -> tuple[None, dict[str, Any]]:
        from flwr.common import parameters_to_ndarrays

        if results:
            self.mean = parameters_to_ndarrays(results[0][1].parameters)
            self.count = len(results)
            self.layout = json.loads(str(results[0][1].metrics[LAYOUT]))
        return None, {}


class _Nodes:
    def __init__(self, n: int) -> None:
        self.n = n

    def num_available(self) -> int:
        return self.n


class _WorkflowContext:
    """The parts of a ``LegacyContext`` the workflow's stage methods read."""

    def __init__(self, server_round: int, nodes: list[int]) -> None:
        from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
        from flwr.server.workflow.constant import Key as WorkflowKey

        self.state = RecordDict({MAIN_CONFIGS_RECORD: ConfigRecord({WorkflowKey.CURRENT_ROUND: server_round}),
                                 MAIN_PARAMS_RECORD: ArrayRecord()})
        self.strategy = _Collector(nodes)
        self.client_manager = _Nodes(len(nodes))


class SecAggPlusGrid(GridWrapper, RoundHook):
    """A grid whose ``send_and_receive`` runs SecAgg+ for ``train``, ``query.gpse`` and ``query.unlearn``.

    Everything else (node ids, other queries) goes to the wrapped grid unchanged, so the
    round loop and FOT's GPSE need no change: they get back ``k`` replies that all carry
    (the unmasked sum) / ``k``. As a round hook it reports the protocol's seconds,
    dropouts and clipped clients per round.

    Parameters
    ----------
    grid : Grid
        The run's grid.
    secagg : SecAgg
        ``privacy.secagg``.
    max_examples : int
        The stream's largest client data set (:func:`max_client_examples`): the bound on
        num-examples when ``secagg.max_weight`` is null.
    """

    name = "secagg"

    def __init__(self, grid: Grid, secagg: SecAgg, max_examples: int) -> None:
        from flwr.server.workflow import SecAggPlusWorkflow

        super().__init__(grid)
        self.secagg = secagg
        self.max_weight = float(secagg.max_weight or max_examples)
        self.workflow = SecAggPlusWorkflow(
            num_shares=secagg.num_shares,
            reconstruction_threshold=secagg.reconstruction_threshold,
            max_weight=1.0,  # weighting happens inside the vector (hides num-examples)
            clipping_range=1.0,  # payloads are pre-scaled by their own ranges
            quantization_range=secagg.quantization_range,
            modulus_range=secagg.modulus_range,
            timeout=secagg.timeout_s,
        )
        self.rounds = 0
        self.seconds = 0.0
        self.last_dropped = 0
        self.last_clipped = 0  # clients of the last secure round whose payload exceeded privacy.secagg.ranges
        self._row_seconds = 0.0

    def round_metrics(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any]:
        """Protocol seconds since the last row, dropouts and clipped clients of the last secure round."""
        row = {"secagg_seconds": self._row_seconds, "secagg_dropped": self.last_dropped,
               "secagg_clipped": self.last_clipped}
        self._row_seconds = 0.0
        return row

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """SecAgg+ for model updates, GPSE statistics and unlearning queries; plain delivery otherwise."""
        messages = list(messages)
        types = {m.metadata.message_type for m in messages}
        if not messages or not types <= SECURED_TYPES:
            return list(self.inner.send_and_receive(messages, timeout=timeout))
        return self._secure(messages)

    def _secure(self, messages: list[Message]) -> list[Message]:
        t0 = time.perf_counter()
        nodes = [m.metadata.dst_node_id for m in messages]
        if len(set(nodes)) != len(nodes):
            raise ConfigError("backend.num_supernodes", len(set(nodes)),
                              f"one SuperNode per client of a round under secure aggregation ({len(nodes)} clients "
                              "this round): SecAgg+ keeps one protocol state per node")
        rec0 = messages[0].content[keys.CONFIG]
        server_round = int(cast(int, rec0.get(keys.SERVER_ROUND, 0)))  # type: ignore[union-attr]
        ctx = _WorkflowContext(server_round, nodes)
        wf = self.workflow
        from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState

        state = WorkflowState()
        ok = wf.setup_stage(self.inner, ctx, state)  # type: ignore[arg-type]
        if ok:
            # fedcl's own message per node replaces the legacy FitIns of the collect stage
            for m in messages:
                content = RecordDict(dict(m.content.items()))
                rec = cast(ConfigRecord, m.content[keys.CONFIG])
                content[keys.CONFIG] = ConfigRecord({**dict(rec), keys.ACTION: m.metadata.message_type,
                                                     MAX_WEIGHT: self.max_weight})
                state.nid_to_fitins[m.metadata.dst_node_id] = content
            for step in (wf.share_keys_stage, wf.collect_masked_vectors_stage, wf.unmask_stage):
                ok = step(self.inner, ctx, state)  # type: ignore[arg-type]
                if not ok:
                    break
        self.rounds += 1
        self.seconds += time.perf_counter() - t0
        self._row_seconds += time.perf_counter() - t0
        col = ctx.strategy
        if not ok or col.mean is None:
            self.last_dropped = len(messages)
            return []
        self.last_dropped = len(messages) - col.count
        if col.layout.get("clip_block"):
            self.last_clipped = round(float(col.mean[1][0]) * col.count)
            if self.last_clipped:
                log.warning("SecAgg+: %d of %d clients had values outside privacy.secagg.ranges (clipped before "
                            "masking, the sum is biased): raise the range of that payload", self.last_clipped,
                            col.count)
        base = messages[0].content.get(keys.ARRAYS)
        content = unvectorize(col.mean, col.count, col.layout, base if isinstance(base, ArrayRecord) else None)
        return [Message(c, reply_to=messages[i]) for i, c in enumerate(per_reply(content, col.count))]


def max_client_examples(stream: Any, num_clients: int) -> int:
    """The largest number of training examples a client holds over all its tasks (a bound on num-examples).

    Over all tasks because unlearning's repair queries train on every seen task at once.
    """
    tasks = range(len(stream.tasks))
    return max(sum(len(stream.client_indices(t, c)) for t in tasks) for c in range(num_clients))


