"""SecAgg+'s vector layout: how a fedcl reply becomes the one vector Flower masks, and back.

Client side (:func:`vectorize`): the weighted model update ``w_i (W_i - W) / range_update``
(also the weights of unlearning's ascent / repair queries), SSD's Fisher sums
``/ range_fisher``, every other ArrayRecord (FOT's GPSE sketches) ``/ range_sketch`` and
every MetricRecord value (ratios, sample counts, losses) ``/ range_stat``, so Flower's
quantiser on [-1, 1] gives each payload its own range; only names and shapes travel in
clear (the layout). Records, arrays and metrics go in sorted order, so two clients with the
same keys always put a value in the same slot; the server checks that every client sent the
same layout before Flower adds the masked vectors (:func:`layout_difference`). A reply with a
NaN or Inf is refused before masking (one NaN would vanish into the modular sum as a finite
number). Server side (:func:`unvectorize`): the unmasked sum back into replies. Both halves
read and write the layout only through this module.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from flwr.app import Array, ArrayRecord, MessageType, MetricRecord, RecordDict

import fedcl.keys as keys
from fedcl.analytic.messages import ANALYTIC_TYPE
from fedcl.config.schema import SecAgg
from fedcl.errors import ClientReplyError
from fedcl.fot.protocol import GPSE_TYPE
from fedcl.records import non_finite_reason
from fedcl.unlearning.protocol import FISHER_KEYS, UNLEARN_TYPE

LAYOUT = "fedcl-secagg-layout"  # clear-text metric of the legacy FitRes: names and shapes only
MAX_WEIGHT = "fedcl-secagg-max-weight"  # the run's bound on num-examples, added to the client's ConfigRecord
SECURED_TYPES = {MessageType.TRAIN, GPSE_TYPE, UNLEARN_TYPE, ANALYTIC_TYPE}
# the payload kinds, each with its range ``privacy.secagg.ranges.<kind>``; the clip block has one flag per kind
CLIP_KINDS = ("update", "sketch", "fisher", "stat")


def vectorize(
    content: RecordDict, base: ArrayRecord | None, secagg: SecAgg, max_weight: float, dp: bool
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """A reply as range-scaled blocks in [-1, 1] plus its clear-text layout (names, shapes, scales).

    ``max_weight`` bounds num-examples (the server sends it: ``privacy.secagg.max_weight``, or
    when that is null the largest client data set of the stream); ``w_i = n_i / max_weight``.
    Under DP every client has weight 1 (the sensitivity of the mean holds for equal weights).
    """
    reason = non_finite_reason(content)
    if reason:  # the reason text of the reply validator without SecAgg+ (strategies/validation.py)
        raise ClientReplyError(reason)
    ranges = secagg.ranges
    max_w = float(max_weight)
    weighted, weight = _weight(content, base, max_w, dp)
    # the weight w_i in [0, 1] gets its own block of range 1: it divides the average, so it needs full precision
    blocks: list[np.ndarray] = [np.asarray([weight], dtype=np.float64)]
    layout: dict[str, Any] = {"weight_scaled": weighted, "records": [],
                              "max_weight": max_w}
    kinds: list[str] = []  # the payload kind of each block after the weight
    for key in sorted(content.keys()):
        rec = content[key]
        if isinstance(rec, ArrayRecord):
            is_update = key == keys.ARRAYS and weighted
            # SSD's Fisher sums have their own scale (optional ranges.fisher, else the sketch range)
            kind = "update" if is_update else ("fisher" if key in FISHER_KEYS else "sketch")
            scale = float(getattr(ranges, kind) or ranges.sketch)
            names, shapes = [], []
            for name in sorted(rec.keys()):
                x = rec[name].numpy().astype(np.float64)
                if is_update:
                    x = weight * (x - base[name].numpy().astype(np.float64))  # type: ignore[index]
                blocks.append(x / scale)
                kinds.append(kind)
                names.append(name)
                shapes.append(list(x.shape))
            layout["records"].append({"key": key, "kind": "update" if is_update else "arrays", "names": names,
                                      "shapes": shapes, "scale": scale})
        elif isinstance(rec, MetricRecord):
            names = sorted(rec.keys())
            vals = []
            for name in names:
                v = float(cast(float, rec[name]))
                vals.append(weight if (name == keys.NUM_EXAMPLES and weighted) else weight * v)
            blocks.append(np.asarray(vals, dtype=np.float64) / float(ranges.stat))
            kinds.append("stat")
            layout["records"].append({"key": key, "kind": "metrics", "names": names, "scale": float(ranges.stat)})
    # Flower's quantiser silently clips to [-range, range]: whether this client's payload of each kind went
    # outside its range travels masked too (second block, one 0/1 flag per kind), so the server learns only
    # how many clients clipped which kind, and refuses the biased sum (strategies/secagg.py)
    clipped = [float(any(bool((np.abs(b) > 1.0).any()) for b, k in zip(blocks[1:], kinds, strict=True) if k == kind))
               for kind in CLIP_KINDS]
    blocks.insert(1, np.asarray(clipped, dtype=np.float64))
    layout["clip_block"] = list(CLIP_KINDS)
    return blocks, layout


def _weight(content: RecordDict, base: ArrayRecord | None, max_w: float, dp: bool) -> tuple[bool, float]:
    """Whether the reply is weighted, and its weight ``w_i = n_i / max_weight`` (1 under DP or unweighted)."""
    metrics: Any = content.get(keys.METRICS)
    # only a train reply (new weights + metrics against the sent model) is weighted; a GPSE reply
    # carries the sent model's base too but its statistics are plain sums
    weighted = base is not None and keys.ARRAYS in content and isinstance(metrics, MetricRecord)
    if not weighted:
        return False, 1.0
    n = float(cast(float, metrics.get(keys.NUM_EXAMPLES, 1)))
    # DP needs equal weights (strategies/privacy.py); FedAvg weights by num-examples
    weight = 1.0 if dp else n / max_w
    if weight > 1.0:
        raise ClientReplyError(f"client has {n:.0f} examples > privacy.secagg.max_weight={max_w:.0f}; raise it "
                               "(or set it to null: the server then uses the stream's largest client data set)")
    return True, weight


def layout_difference(layout: dict[str, Any], reference: dict[str, Any]) -> str | None:
    """What differs between a client's layout and the reference client's (a record, a key, a shape), or ``None``."""
    if layout.get("weight_scaled") != reference.get("weight_scaled"):
        return "one reply is a weighted train reply, the other is not"
    mine = {r["key"]: r for r in layout["records"]}
    ref = {r["key"]: r for r in reference["records"]}
    for key in sorted(set(mine) | set(ref)):
        if key not in mine or key not in ref:
            return f"record '{key}' is {'missing' if key not in mine else 'extra'}"
        a, b = mine[key], ref[key]
        if a["names"] != b["names"]:
            only = sorted(set(a["names"]) - set(b["names"]))
            missing = sorted(set(b["names"]) - set(a["names"]))
            if not only and not missing:
                return f"record '{key}': keys in another order {a['names']} (reference {b['names']})"
            return f"record '{key}': extra keys {only}, missing keys {missing}"
        if a.get("shapes") != b.get("shapes") or a["kind"] != b["kind"]:
            return f"record '{key}': shapes {a.get('shapes')} instead of {b.get('shapes')}"
    return None


def per_reply(content: RecordDict, count: int) -> list[RecordDict]:
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
            # the layout is sorted; the model keeps the sent model's order (Flower's clipping mods compare it)
            out[r["key"]] = ArrayRecord({name: new[name] for name in base.keys() if name in new})
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
                    rec[name] = max(1, round(mean_w * float(layout["max_weight"])))
                elif weighted:
                    rec[name] = float(vals[i]) / total_w
                else:
                    rec[name] = float(vals[i])  # sum / count: the strategy's sum over replies is the sum
            out[r["key"]] = MetricRecord(rec)  # type: ignore[arg-type]
    del count
    return out
