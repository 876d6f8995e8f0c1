"""The one bridge between Flower's SecAgg+ (legacy API) and fedcl's Message-API strategies.

Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead",
CCS 2020. No cryptography lives here: the server runs the four stages of Flower's
``SecAggPlusWorkflow`` (setup, share keys, collect masked vectors, unmask) and the
client runs Flower's ``secaggplus_mod``; this module only

* puts fedcl's own per-client messages (model, config, FOT bases) into the
  collect-masked-vectors stage instead of legacy ``FitIns``;
* turns a client's reply into one flat vector before masking: the weighted
  model update ``w_i (W_i - W) / range_update`` (also the weights of unlearning's
  ascent / repair queries), SSD's Fisher sums ``/ range_fisher``, every other
  ArrayRecord (FOT's GPSE sketches) ``/ range_sketch`` and every MetricRecord value
  (ratios, sample counts, losses) ``/ range_stat``, so Flower's quantiser on [-1, 1]
  gives each payload its own range; only names and shapes travel in clear. Whether
  a client's payload left its range travels masked too (the server gets a count);
* turns the unmasked sum back into replies: ``k`` identical replies, each carrying
  the aggregate divided by ``k``, so FedAvg's average and FOT's sums are those of
  the round's clients and the strategies stay exactly as they are.

Quantisation error (stochastic rounding of Flower's quantiser) is at most one level,
``2 range / quantization_range``, per client and coordinate.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any, cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from fedcl import keys
from fedcl.errors import ClientReplyError, ConfigError

LAYOUT = "fedcl-secagg-layout"  # clear-text metric of the legacy FitRes: names and shapes only
ACTION = "fedcl-secagg-action"  # the original message type, added to the client's ConfigRecord
MAX_WEIGHT = "fedcl-secagg-max-weight"  # the run's bound on num-examples, added to the client's ConfigRecord
DEFAULT_MAX_WEIGHT = 1000.0
GPSE_TYPE = f"{MessageType.QUERY}.{keys.GPSE}"
UNLEARN_TYPE = f"{MessageType.QUERY}.{keys.UNLEARN}"  # unlearning queries: Fisher sums (SSD), weighted means (GA)
SECURED_TYPES = {MessageType.TRAIN, GPSE_TYPE, UNLEARN_TYPE}
FISHER_KEYS = (keys.FISHER_FORGET, keys.FISHER_RETAIN)
log = logging.getLogger("fedcl")


def is_secagg_message(msg: Message) -> bool:
    """Whether ``msg`` is a stage of Flower's SecAgg+ protocol."""
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    return RECORD_KEY_CONFIGS in msg.content.config_records


# ---- client side -------------------------------------------------------------------------
def secagg_client_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Flower's ``secaggplus_mod`` around fedcl's handlers (train with its DP mods, or GPSE)."""
    from flwr.client.mod import secaggplus_mod

    def inner(m: Message, c: Context) -> Message:
        from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

        from fedcl.privacy.client_mod import dp_mod

        del m.content[RECORD_KEY_CONFIGS]  # the handlers (and Flower's DP mods) see fedcl's message only
        rec = cast(ConfigRecord, m.content[keys.CONFIG])
        base = m.content.get(keys.ARRAYS)
        if rec.get(ACTION) == GPSE_TYPE:
            from fedcl.client_app import run_gpse

            out = run_gpse(m, c)
        elif rec.get(ACTION) == UNLEARN_TYPE:
            from fedcl.unlearning.client import run_unlearn

            out = run_unlearn(m, c)  # not a model update of the stream: no DP mod
        else:
            out = dp_mod(m, c, call_next)
        if out.has_error():
            return out
        from fedcl.client_app import _parse_config

        cfg = _parse_config(str(rec[keys.RUN_CONFIG_JSON]))
        mw = rec.get(MAX_WEIGHT)
        vector, layout = vectorize(out.content, base if isinstance(base, ArrayRecord) else None, cfg,
                                   float(cast(float, mw)) if mw is not None else None)
        return Message(_legacy_fitres(vector, layout), reply_to=m)

    return cast(Message, secaggplus_mod(msg, ctxt, inner))


def _legacy_fitres(vector: list[np.ndarray], layout: dict[str, Any]) -> RecordDict:
    """The legacy ``FitRes`` layout ``secaggplus_mod`` masks (weight 1: weighting is inside the vector)."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(vector), 1, {LAYOUT: json.dumps(layout)})
    return compat.fitres_to_recorddict(res, keep_input=False)


def vectorize(
    content: RecordDict, base: ArrayRecord | None, cfg: dict[str, Any], max_weight: float | None = None
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """A reply as range-scaled blocks in [-1, 1] plus its clear-text layout (names, shapes, scales).

    ``max_weight`` bounds num-examples (the server sends it: ``privacy.secagg.max_weight``, or
    when that is null the largest client data set of the stream); ``w_i = n_i / max_weight``.
    """
    sa = cfg["privacy"]["secagg"]
    ranges = sa["ranges"]
    max_w = float(max_weight or sa.get("max_weight") or DEFAULT_MAX_WEIGHT)
    weight = 1.0
    metrics: Any = content.get(keys.METRICS)
    # only a train reply (new weights + metrics against the sent model) is weighted; a GPSE reply
    # carries the sent model's base too but its statistics are plain sums
    weighted = base is not None and keys.ARRAYS in content and isinstance(metrics, MetricRecord)
    if weighted:
        n = float(cast(float, metrics.get(keys.NUM_EXAMPLES, 1)))
        # DP needs equal weights (strategies/privacy.py); FedAvg weights by num-examples
        weight = 1.0 if (cfg["privacy"].get("dp")) else n / max_w
        if weight > 1.0:
            raise ClientReplyError(f"client has {n:.0f} examples > privacy.secagg.max_weight={max_w:.0f}; raise it "
                                   "(or set it to null: the server then uses the stream's largest client data set)")
    # the weight w_i in [0, 1] gets its own block of range 1: it divides the average, so it needs full precision
    blocks: list[np.ndarray] = [np.asarray([weight], dtype=np.float64)]
    layout: dict[str, Any] = {"weight_scaled": weighted, "records": [],
                              "max_weight": max_w}
    for key, rec in content.items():
        if isinstance(rec, ArrayRecord):
            is_update = key == keys.ARRAYS and weighted
            # SSD's Fisher sums have their own scale (optional ranges.fisher, else the sketch range)
            kind = "update" if is_update else ("fisher" if key in FISHER_KEYS else "sketch")
            scale = float(ranges.get(kind) or ranges["sketch"])
            names, shapes = [], []
            for name, arr in rec.items():
                x = arr.numpy().astype(np.float64)
                if is_update:
                    x = weight * (x - base[name].numpy().astype(np.float64))  # type: ignore[index]
                blocks.append(x / scale)
                names.append(name)
                shapes.append(list(x.shape))
            layout["records"].append({"key": key, "kind": "update" if is_update else "arrays", "names": names,
                                      "shapes": shapes, "scale": scale})
        elif isinstance(rec, MetricRecord):
            names = list(rec.keys())
            vals = []
            for name in names:
                v = float(cast(float, rec[name]))
                vals.append(weight if (name == keys.NUM_EXAMPLES and weighted) else weight * v)
            blocks.append(np.asarray(vals, dtype=np.float64) / float(ranges["stat"]))
            layout["records"].append({"key": key, "kind": "metrics", "names": names, "scale": float(ranges["stat"])})
    # Flower's quantiser silently clips to [-range, range]: whether this client's payload went outside its
    # range travels masked too (second block, 0 or 1), so the server learns only how many clients clipped
    clipped = float(any(bool((np.abs(b) > 1.0).any()) for b in blocks[1:]))
    blocks.insert(1, np.asarray([clipped], dtype=np.float64))
    layout["clip_block"] = True
    return blocks, layout


# ---- server side -------------------------------------------------------------------------
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


class SecAggPlusGrid:
    """A Grid whose ``send_and_receive`` runs SecAgg+ for ``train``, ``query.gpse`` and ``query.unlearn``.

    Everything else (node ids, other queries) goes to the wrapped grid unchanged, so
    ``run_federation`` and FOT's ``on_task_end`` need no change: they get back ``k``
    replies that all carry (the unmasked sum) / ``k``.

    Parameters
    ----------
    grid : Grid
        The real grid.
    secagg : dict
        ``cfg['privacy']['secagg']``.
    max_examples : int | None, default None
        The stream's largest client data set (:func:`max_client_examples`): the bound on
        num-examples when ``secagg.max_weight`` is null.
    """

    def __init__(self, grid: Any, secagg: dict[str, Any], max_examples: int | None = None) -> None:
        from flwr.server.workflow import SecAggPlusWorkflow

        self.grid = grid
        self.secagg = dict(secagg)
        self.max_weight = float(secagg.get("max_weight") or max_examples or DEFAULT_MAX_WEIGHT)
        self.workflow = SecAggPlusWorkflow(
            num_shares=secagg["num_shares"],
            reconstruction_threshold=secagg["reconstruction_threshold"],
            max_weight=1.0,  # weighting happens inside the vector (hides num-examples)
            clipping_range=1.0,  # payloads are pre-scaled by their own ranges
            quantization_range=int(secagg["quantization_range"]),
            modulus_range=int(secagg["modulus_range"]),
            timeout=float(secagg.get("timeout_s", 600)),
        )
        self.rounds = 0
        self.seconds = 0.0
        self.last_dropped = 0
        self.last_clipped = 0  # clients of the last secure round whose payload exceeded privacy.secagg.ranges
        self._row_seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        if name == "grid":
            raise AttributeError(name)
        return getattr(self.grid, name)

    def secagg_row(self) -> dict[str, float | int]:
        """Per-round columns of ``metrics.jsonl``: protocol seconds since the last call, dropouts, clipping."""
        row = {"secagg_seconds": self._row_seconds, "secagg_dropped": self.last_dropped,
               "secagg_clipped": self.last_clipped}
        self._row_seconds = 0.0
        return row

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """SecAgg+ for model updates, GPSE statistics and unlearning queries; plain delivery otherwise."""
        messages = list(messages)
        types = {m.metadata.message_type for m in messages}
        if not messages or not types <= SECURED_TYPES:
            return list(self.grid.send_and_receive(messages, timeout=timeout))
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
        ok = wf.setup_stage(self.grid, ctx, state)  # type: ignore[arg-type]
        if ok:
            # fedcl's own message per node replaces the legacy FitIns of the collect stage
            for m in messages:
                content = RecordDict(dict(m.content.items()))
                rec = cast(ConfigRecord, m.content[keys.CONFIG])
                content[keys.CONFIG] = ConfigRecord({**dict(rec), ACTION: m.metadata.message_type,
                                                     MAX_WEIGHT: self.max_weight})
                state.nid_to_fitins[m.metadata.dst_node_id] = content
            for step in (wf.share_keys_stage, wf.collect_masked_vectors_stage, wf.unmask_stage):
                ok = step(self.grid, ctx, state)  # type: ignore[arg-type]
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
        return [Message(c, reply_to=messages[i]) for i, c in enumerate(_per_reply(content, col.count))]


def max_client_examples(stream: Any, num_clients: int) -> int:
    """The largest number of training examples a client holds over all its tasks (a bound on num-examples).

    Over all tasks because unlearning's repair queries train on every seen task at once.
    """
    tasks = range(len(stream.tasks))
    return max(sum(len(stream.client_indices(t, c)) for t in tasks) for c in range(num_clients))


def _per_reply(content: RecordDict, count: int) -> list[RecordDict]:
    """``count`` replies of ``content``, each with its own records (strategies edit replies in place).

    An unweighted sample count (GPSE) is sum / count per reply, which the reply validator
    rejects as a non-integer: the rounded sum is split into integers instead (same total).
    """
    out = []
    for i in range(count):
        rd = RecordDict()
        for key, rec in content.items():
            if isinstance(rec, MetricRecord):
                rec = MetricRecord(dict(rec))  # type: ignore[arg-type]
                if keys.NUM_EXAMPLES in rec and isinstance(rec[keys.NUM_EXAMPLES], float):
                    total = round(float(cast(float, rec[keys.NUM_EXAMPLES])) * count)
                    rec[keys.NUM_EXAMPLES] = total // count + (1 if i < total % count else 0)
            rd[key] = rec
        out.append(rd)
    return out


def unvectorize(
    mean: list[np.ndarray], count: int, layout: dict[str, Any], base: ArrayRecord | None
) -> RecordDict:
    """One reply's content from the unmasked mean over ``count`` clients (each reply: sum / count).

    Weighted records (a train reply: update and metrics carry ``w_i``) become the
    weighted average ``W + sum w_i dW_i / sum w_i`` and ``sum w_i x_i / sum w_i`` with
    ``num-examples = sum w_i / count`` per reply; the rest (GPSE) is ``sum / count``.
    """
    weighted = bool(layout.get("weight_scaled")) and base is not None
    out = RecordDict()
    it = iter(mean)
    mean_w = float(next(it)[0])  # mean of the clients' weights w_i
    if layout.get("clip_block"):
        next(it)  # the share of clients whose payload exceeded its range (clients_clipped)
    blocks: list[tuple[dict[str, Any], list[np.ndarray]]] = []
    for r in layout["records"]:
        n = len(r["names"]) if r["kind"] != "metrics" else 1
        blocks.append((r, [next(it) * float(r["scale"]) for _ in range(n)]))
    total_w = max(mean_w, 1e-12) if weighted else 1.0
    for r, arrs in blocks:
        if r["kind"] == "update" and base is not None:
            new = {}
            for name, shape, a in zip(r["names"], r["shapes"], arrs, strict=True):
                w0 = base[name].numpy()
                new[name] = Array(np.ascontiguousarray((w0 + a.reshape(shape) / total_w).astype(w0.dtype)))
            out[r["key"]] = ArrayRecord(new)
        elif r["kind"] == "arrays":
            out[r["key"]] = ArrayRecord({
                name: Array(np.ascontiguousarray(a.reshape(shape).astype(np.float32)))
                for name, shape, a in zip(r["names"], r["shapes"], arrs, strict=True)
            })
        else:
            vals = arrs[0]
            rec: dict[str, float | int] = {}
            for i, name in enumerate(r["names"]):
                if weighted and name == keys.NUM_EXAMPLES:
                    # equal per reply, so FedAvg's average is the clients' weighted one; ~ mean n_i
                    rec[name] = max(1, round(mean_w * float(layout.get("max_weight", 1.0))))
                elif weighted:
                    rec[name] = float(vals[i]) / total_w
                else:
                    rec[name] = float(vals[i])  # sum / count: the strategy's sum over replies is the sum
            out[r["key"]] = MetricRecord(rec)  # type: ignore[arg-type]
    del count
    return out
