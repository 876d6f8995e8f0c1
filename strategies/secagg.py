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
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

import fedcl.keys as keys
from fedcl.config.schema import SecAgg
from fedcl.errors import ClientReplyError, ConfigError
from fedcl.hooks import RoundHook
from fedcl.privacy.secagg_protocol import (
    LAYOUT,
    MAX_WEIGHT,
    SECURED_TYPES,
    layout_difference,
    per_reply,
    unvectorize,
)
from strategies.server.grid import GridWrapper
from strategies.validation import short_reason

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


class _CollectGuard:
    """The grid of the collect-masked-vectors stage: checks every reply before Flower adds the masked vectors.

    A client whose reply was refused on its side (NaN/Inf, too many examples) answers with an error:
    it is recorded as rejected (SecAgg+ then recovers the round without it, as for a dropout). Clients
    whose layouts differ would have their values added slot by slot into the wrong places (or crash the
    sum): the round stops with an error naming both clients and what differs.
    """

    def __init__(self, inner: Grid, clients: dict[int, int], what: str) -> None:
        self.inner, self.clients, self.what = inner, clients, what
        self.rejected: dict[int, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        import flwr.compat.common.recorddict_compat as compat

        replies = list(self.inner.send_and_receive(messages, timeout=timeout))
        layouts: list[tuple[int, dict[str, Any]]] = []
        for r in replies:
            client = self.clients.get(r.metadata.src_node_id, -1)
            if r.has_error():
                self.rejected[client] = short_reason(r.error.reason)
                log.warning("%s: client %d rejected: %s", self.what, client, self.rejected[client])
                continue
            fitres = compat.recorddict_to_fitres(r.content, keep_input=True)
            layouts.append((client, json.loads(str(fitres.metrics[LAYOUT]))))
        layouts.sort(key=lambda cl: cl[0])
        for client, layout in layouts[1:]:
            diff = layout_difference(layout, layouts[0][1])
            if diff:
                raise ClientReplyError(
                    f"SecAgg+ {self.what}: client {client}'s reply differs from client {layouts[0][0]}'s: {diff}. "
                    "Masked vectors are added slot by slot, so every client of a secure round must send the same "
                    "records, keys and shapes (a metric only some clients report cannot be summed securely): "
                    "report the metric on every client, or run without privacy.secure_aggregation"
                )
        return replies


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
    min_replies : int, default 1
        ``federation.min_replies``. A train round whose masked vectors came from fewer clients
        is not unmasked (the grid returns no reply, so the round loop retries it): the server
        never holds two sums of one round over different client sets, whose difference would be
        one client's update.
    """

    name = "secagg"

    def __init__(self, grid: Grid, secagg: SecAgg, max_examples: int, min_replies: int = 1) -> None:
        from flwr.server.workflow import SecAggPlusWorkflow

        super().__init__(grid)
        self.secagg = secagg
        self.min_replies = min_replies
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
        self.last_rejected: dict[int, str] = {}  # client -> why its own side refused its reply (NaN/Inf, ...)
        self._row_seconds = 0.0

    def round_metrics(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any]:
        """Protocol seconds since the last row, dropouts, rejected and clipped clients of the last secure round."""
        row = {"secagg_seconds": self._row_seconds, "secagg_dropped": self.last_dropped,
               "secagg_rejected": len(self.last_rejected), "secagg_clipped": self.last_clipped}
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
        self._refuse_overflow(len(messages))
        rec0 = messages[0].content[keys.CONFIG]
        server_round = int(cast(int, rec0.get(keys.SERVER_ROUND, 0)))  # type: ignore[union-attr]
        ctx = _WorkflowContext(server_round, nodes)
        wf = self.workflow
        from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState

        clients = {m.metadata.dst_node_id: int(cast(int, cast(ConfigRecord, m.content[keys.CONFIG]).get(
            keys.CLIENT_ID, i))) for i, m in enumerate(messages)}
        guard = _CollectGuard(self.inner, clients, str(messages[0].metadata.message_type))
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
            for step, grid in ((wf.share_keys_stage, self.inner), (wf.collect_masked_vectors_stage, guard),
                               (wf.unmask_stage, self.inner)):
                if step == wf.unmask_stage and not self._may_unmask(messages, len(state.legacy_results)):
                    ok = False
                    break
                ok = step(grid, ctx, state)  # type: ignore[arg-type]
                if not ok:
                    break
                if step == wf.share_keys_stage:
                    _forget_early_dropouts(state)
        self.last_rejected = dict(guard.rejected)
        self.rounds += 1
        self.seconds += time.perf_counter() - t0
        self._row_seconds += time.perf_counter() - t0
        col = ctx.strategy
        if not ok or col.mean is None:
            self.last_dropped = len(messages)
            return []
        self.last_dropped = len(messages) - col.count
        self._refuse_clipped(col)
        base = messages[0].content.get(keys.ARRAYS)
        content = unvectorize(col.mean, col.count, col.layout, base if isinstance(base, ArrayRecord) else None)
        return [Message(c, reply_to=messages[i]) for i, c in enumerate(per_reply(content, col.count))]


    def _may_unmask(self, messages: list[Message], collected: int) -> bool:
        """Whether a sum over ``collected`` clients may be revealed: a train round below min_replies is retried."""
        need = min(self.min_replies, len(messages))
        if messages[0].metadata.message_type != MessageType.TRAIN or collected >= need:
            return True
        log.warning("SecAgg+: only %d masked vectors < federation.min_replies=%d: the round is retried without "
                    "unmasking this sum (two sums over different clients would reveal one client's update)",
                    collected, need)
        return False

    def _refuse_overflow(self, clients: int) -> None:
        """A ``ConfigError`` before a protocol whose modular sum of ``clients`` payloads would wrap around."""
        q, mod = self.secagg.quantization_range, self.secagg.modulus_range
        if clients * q >= mod:
            raise ConfigError("privacy.secagg.modulus_range", mod,
                              f"an integer > {clients} x quantization_range ({q}) = {clients * q}: this secure sum "
                              f"has {clients} clients, whose quantised values would wrap around the modulus "
                              "(silently wrong sums); raise modulus_range or lower quantization_range")

    def _refuse_clipped(self, col: _Collector) -> None:
        """A ``ConfigError`` naming the range to raise when a client's payload was clipped (the sum is biased)."""
        kinds = col.layout.get("clip_block")
        if not kinds or col.mean is None:
            return
        counts = {k: round(float(v) * col.count) for k, v in zip(kinds, col.mean[1], strict=True)}
        self.last_clipped = max(counts.values(), default=0)
        bad = {k: c for k, c in counts.items() if c}
        if bad:
            kind, count = next(iter(bad.items()))
            ranges = self.secagg.ranges
            value = getattr(ranges, kind) if kind != "fisher" else (ranges.fisher or ranges.sketch)
            raise ConfigError(f"privacy.secagg.ranges.{kind}", value,
                              f"a larger range: {count} of {col.count} clients had {kind} values outside "
                              f"[-{value}, {value}] (clipped before masking, so the secure sum would be biased; "
                              f"clipped per payload: {bad})")


def _forget_early_dropouts(state: Any) -> None:
    """After key sharing, a client that dropped out in setup or key sharing no longer exists for the protocol.

    Nobody holds its key shares and nobody masked with it (a client masks only with the neighbours
    whose encrypted shares it received), yet Flower's unmask stage lists it as dead (so every client
    fails looking up its share) and removes pairwise masks with every setup neighbour. Only the clients
    that finished key sharing stay sampled and neighbours; dropouts from here on are recovered by the
    unmask stage as the protocol intends (Bell et al. 2020, rounds 2-4).
    """
    alive = set(state.active_node_ids)
    state.sampled_node_ids = set(alive)
    state.nid_to_neighbours = {nid: set(nbrs) & alive for nid, nbrs in state.nid_to_neighbours.items()
                               if nid in alive}


def max_client_examples(stream: Any, num_clients: int) -> int:
    """The largest number of training examples a client holds over all its tasks (a bound on num-examples).

    Over all tasks because unlearning's repair queries train on every seen task at once.
    """
    tasks = range(len(stream.tasks))
    return max(sum(len(stream.client_indices(t, c)) for t in tasks) for c in range(num_clients))


