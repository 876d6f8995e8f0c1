"""An in-process Grid: delivers messages to a ClientApp with one Context per node (no Ray)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp


class InProcGrid:
    """``send_and_receive`` calls ``app`` directly; ``drop(stage_call, node)`` loses a reply."""

    def __init__(self, app: ClientApp, nodes: list[int], run_config: dict | None = None) -> None:
        self.app = app
        self.nodes = nodes
        self.contexts = {n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(),
                                    run_config=run_config or {}) for n in nodes}
        self.calls = 0
        self.drop_rule: Callable[[int, int], bool] | None = None
        self.seen: list[Message] = []  # every reply that reached the server side (for the leak test)
        self._next_id = 1

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        self.calls += 1
        replies = []
        for m in messages:
            m.metadata.__dict__["_src_node_id"] = 0
            m.metadata.__dict__["_message_id"] = f"m{self._next_id}"
            self._next_id += 1
            node = m.metadata.dst_node_id
            if self.drop_rule is not None and self.drop_rule(self.calls, node):
                continue
            # a copy, as serialisation would give each node (Flower's mods change what they receive)
            try:
                reply = self.app(copy.deepcopy(m), self.contexts[node])
            except Exception as exc:  # noqa: BLE001 - as on a SuperNode: a client's exception is an error reply
                reply = Message(Error(2, f"{type(exc).__name__} occurred. Message: {exc}"), reply_to=m)
            reply.metadata.__dict__["_src_node_id"] = node
            replies.append(reply)
            self.seen.append(reply)
        return replies


def masked_vectors(seen: list[Message]) -> list[np.ndarray]:
    """The SecAgg+ masked vectors in replies that reached the server side, one flat array per reply."""
    from flwr.common import bytes_to_ndarray
    from flwr.common.secure_aggregation.secaggplus_constants import Key

    out = []
    for r in seen:
        if r.has_error():
            continue
        for rec in r.content.config_records.values():
            if Key.MASKED_PARAMETERS in rec:
                out.append(np.concatenate([bytes_to_ndarray(b).ravel() for b in rec[Key.MASKED_PARAMETERS]]))  # type: ignore[union-attr]
    return out


def looks_masked(vector: np.ndarray, quantization_range: int) -> bool:
    """True when ``vector`` looks uniform over the modulus, not like quantised values in [0, range].

    A client's quantised payload lies in [0, quantization_range] (times its weight factor <= 1);
    the pairwise and private masks spread it uniformly over [0, modulus_range), so with
    modulus 2^32 and range 2^22 about 99.8 % of masked entries exceed twice the range.
    """
    return bool(np.mean(vector > 2 * quantization_range) > 0.95)
