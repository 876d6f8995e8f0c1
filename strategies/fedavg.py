"""FedAvg for continual streams: knows the task schedule and talks to logical clients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from torch import nn

import fedcl.keys as keys
from fedcl.client.instruction import train_config
from fedcl.config import Config, to_json
from fedcl.data import Schedule
from fedcl.records import non_finite_arrays
from fedcl.seeding import derive_seed
from strategies.aggregation import fedavg, metric_mean
from strategies.extra_sums import ExtraSums
from strategies.node_map import NodeMap
from strategies.robust import robust_aggregate
from strategies.round_faults import RoundFaults
from strategies.validation import ReplyValidator

ModelRecords = (keys.ARRAYS, keys.METRICS)


class Averager(Protocol):
    """What replaces FedAvg's averaging step (client-level DP: clip, mean, noise; ``strategies/privacy.py``)."""

    def configure(self, server_round: int, arrays: ArrayRecord, messages: list[Message], population: int) -> None:
        """See (and complete) the round's messages before they are sent; ``population``: the clients sampled from."""

    def average(self, server_round: int, replies: list[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The round's aggregate from the sound replies (model records only)."""
        ...


class FCLFedAvg(FedAvg):
    """Federated Averaging over a continual task stream.

    McMahan et al., "Communication-Efficient Learning of Deep Networks from
    Decentralized Data", AISTATS 2017. Each round the strategy picks the logical
    clients that are active (the schedule gives each its task), sends each one
    its client id, task id, round-in-task and the learning-rate config, and
    averages the returned weights by ``num-examples`` (in canonical order, in float64:
    :mod:`strategies.aggregation`). Logical clients are mapped onto the available
    nodes (:mod:`strategies.node_map`), so 10 or 1,000 clients run on however many
    SuperNodes exist. With ``proximal_mu > 0`` clients add FedProx's proximal term
    (Li et al., MLSys 2020), as Flower's ``FedProx`` does by sending ``proximal-mu``.

    Extra records in a reply (strategy payloads such as FOT sketches) are taken
    out before the averaging and handed to :meth:`aggregate_extras`. Those named
    ``sum-<name>`` are also summed over the round's clients and sent to every
    client next round (:class:`~strategies.extra_sums.ExtraSums`, FedCurv).

    Parameters
    ----------
    cfg : Config
        The run config; the strategy reads ``cfg.strategy`` (``proximal_mu``, ``aggregator``:
        ``mean`` or a robust rule of :mod:`strategies.robust` with ``trim_beta`` / ``krum_f``),
        ``cfg.federation`` (clients, sampling, node mapping) and ``cfg.train``.
    schedule : Schedule
        Which task each client trains in each round.
    state_dir : str | None
        Folder the clients' disk state store uses.
    averager : Averager | None, default None
        Replaces the averaging step (privacy); ``None`` = FedAvg's mean / the robust rule.
    """

    def __init__(self, *, cfg: Config, schedule: Schedule, state_dir: str | None,
                 averager: Averager | None = None) -> None:
        super().__init__(min_train_nodes=1, min_available_nodes=1, fraction_evaluate=0.0,
                         train_metrics_aggr_fn=metric_mean)  # float64, canonical order
        self.cfg = cfg
        self.schedule = schedule
        self.config_json = to_json(cfg)
        self.num_clients = cfg.federation.num_clients
        self.clients_per_round = cfg.federation.clients_per_round
        self.state_dir = state_dir
        self.seed = cfg.seed
        self.averager = averager
        self.reply_timeout_s = cfg.federation.round_timeout_s or cfg.backend.timeout_s
        self.bytes_down = 0
        self.bytes_up = 0
        self.extra_sums = ExtraSums()
        self.validator = ReplyValidator(self.weighted_by_key)
        self.node_map = NodeMap(cfg.federation.node_mapping, self.num_clients, wait_s=cfg.backend.timeout_s)
        self.round_faults = RoundFaults()  # the last aggregate_train's failed / rejected clients
        self.sent_messages: list[Message] = []  # this round's messages: replies are matched to clients by id
        self.round_arrays: ArrayRecord | None = None  # this round's global arrays: replies must match them
        self._excluded: set[int] = set()  # clients that left (served unlearning requests)
        self._client_config: dict[str, Any] = {}  # keys added to every client's train config (unlearning)

    # ---- what other parts of the run may change, through methods ------------
    def exclude_clients(self, clients: Iterable[int]) -> None:
        """These clients never train again (a served client-level deletion request)."""
        self._excluded |= {int(c) for c in clients}

    def set_client_config(self, key: str, value: Any) -> None:
        """Add ``key: value`` to every client's train config from now on."""
        self._client_config[key] = value

    def server_model(self, model: nn.Module) -> nn.Module:
        """The model the server loads global arrays into (evaluation, unlearning): ``model`` itself here."""
        return model

    # ---- client selection -------------------------------------------------
    def eligible_clients(self, server_round: int) -> list[int]:
        """The clients this round samples from: active in the schedule and not excluded (DP's population)."""
        return [c for c in range(self.num_clients)
                if self.schedule.task_at(server_round, c) is not None and c not in self._excluded]

    def sample_clients(self, server_round: int) -> list[int]:
        """The logical clients that train this round (deterministic in the seed and round)."""
        active = self.eligible_clients(server_round)
        k = self.clients_per_round
        if k is None or k >= len(active):
            return active
        rng = np.random.default_rng(derive_seed(self.seed, "sample", server_round))
        return sorted(int(c) for c in rng.choice(active, size=k, replace=False))

    def node_for(self, client_id: int, node_ids: list[int]) -> int:
        """The node that plays logical client ``client_id`` (``federation.node_mapping``)."""
        return self.node_map.node_for(client_id, node_ids)

    def wait_for_nodes(self, grid: Grid) -> list[int]:
        """Sorted node ids, once ``min_available_nodes`` (and, by partition, every partition) are connected."""
        return self.node_map.nodes(grid, self.min_available_nodes)

    def client_config(self, server_round: int, client_id: int) -> dict[str, Any]:
        """Per-client config keys of a round (subclasses add theirs with ``super()``)."""
        task = self.schedule.task_at(server_round, client_id)
        assert task is not None
        return train_config(
            self.config_json, server_round, client_id, task,
            task_round=self.schedule.task_round(server_round, client_id),
            last_round_of_task=self.schedule.is_last_round_of_task(server_round, client_id),
            lr=self.cfg.train.lr, local_epochs=self.cfg.train.local_epochs,
            proximal_mu=self.cfg.strategy.proximal_mu, state_dir=self.state_dir, extra=self._client_config,
        )

    def train_payload(self, server_round: int) -> dict[str, ArrayRecord | ConfigRecord]:
        """Extra records sent to every client this round (last round's ``sum-*`` sums, if any)."""
        return self.extra_sums.payload()

    # ---- Flower Strategy API ----------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """One message per sampled logical client with its own config record."""
        nodes = self.wait_for_nodes(grid)
        payload = self.train_payload(server_round)
        messages = []
        for c in self.sample_clients(server_round):
            rec = ConfigRecord({**dict(config), **self.client_config(server_round, c)})
            content = RecordDict({keys.ARRAYS: arrays, keys.CONFIG: rec, **payload})
            messages.append(
                Message(content=content, message_type=MessageType.TRAIN, dst_node_id=self.node_for(c, nodes))
            )
        if self.averager is not None:
            self.averager.configure(server_round, arrays, messages, len(self.eligible_clients(server_round)))
        self.sent_messages, self.round_arrays = messages, arrays
        down = arrays.count_bytes() + sum(r.count_bytes() for r in payload.values())
        self.bytes_down += down * len(messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop failed and invalid replies, strip strategy payloads, aggregate, then post-process."""
        replies, self.round_faults = self.validator.split_train(self.sent_messages, list(replies), self.round_arrays)
        if not replies:
            return None, None
        extras: list[dict[str, Any]] = []
        for r in replies:
            self.bytes_up += sum(rec.count_bytes() for rec in r.content.array_records.values())
            extra = {k: r.content[k] for k in list(r.content.keys()) if k not in ModelRecords}
            for k in extra:
                del r.content[k]
            extras.append(extra)
        self.extra_sums.add_round(server_round, extras)
        aggregator = self.cfg.strategy.aggregator
        if self.averager is not None:  # privacy: clip, average, noise (strategies/privacy.py)
            arrays, metrics = self.averager.average(server_round, replies)
        elif aggregator == "mean":
            arrays, metrics = fedavg([r.content for r in replies], self.weighted_by_key)
        else:
            contents = [r.content for r in replies]
            arrays = robust_aggregate(contents, aggregator, self.cfg.strategy.trim_beta, self.cfg.strategy.krum_f)
            metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        if arrays is not None:
            arrays = self.aggregate_extras(server_round, arrays, replies, extras)
        if arrays is not None and non_finite_arrays(arrays):
            # sound replies can still overflow: keep the previous global model rather than a broken one
            self.round_faults.discarded_aggregate = True
            return None, metrics
        return arrays, metrics

    def aggregate_extras(
        self,
        server_round: int,
        arrays: ArrayRecord,
        replies: list[Message],
        extras: list[dict[str, Any]],
    ) -> ArrayRecord:
        """Post-process the averaged model with the replies' extra records (identity here)."""
        return arrays

    def on_task_end(self, server_round: int, task_id: int, arrays: ArrayRecord, grid: Grid) -> ArrayRecord:
        """Called after the round in which the last client left ``task_id``."""
        return arrays

    def subspace_bases(self) -> dict[str, Any]:
        """Per-layer bases of a subspace strategy (FOT's); none here. Unlearning compares them with its oracle's."""
        return {}

    # ---- checkpointed server state ------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Strategy state for checkpoints (subclasses extend it with ``super()``)."""
        return {"bytes_up": self.bytes_up, "bytes_down": self.bytes_down, "extra_sums": self.extra_sums.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.bytes_up = int(state["bytes_up"])
        self.bytes_down = int(state["bytes_down"])
        self.extra_sums.load_state_dict(state["extra_sums"])
