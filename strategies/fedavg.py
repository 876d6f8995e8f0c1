"""FedAvg for continual streams: knows the task schedule and talks to logical clients."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedcl import keys
from fedcl.config import to_json
from fedcl.data import Schedule
from fedcl.trainer import derive_seed
from strategies.aggregation import fedavg, metric_mean
from strategies.extra_sums import ExtraSums
from strategies.node_map import NodeMap
from strategies.robust import check_aggregator, robust_aggregate
from strategies.round_faults import RoundFaults
from strategies.validation import ReplyValidator, non_finite_arrays

ModelRecords = (keys.ARRAYS, keys.METRICS)


class FCLFedAvg(FedAvg):
    """Federated Averaging over a continual task stream.

    McMahan et al., "Communication-Efficient Learning of Deep Networks from
    Decentralized Data", AISTATS 2017. Each round the strategy picks the logical
    clients that are active (the schedule gives each its task), sends each one
    its client id, task id, round-in-task and the learning-rate config, and
    averages the returned weights by ``num-examples``. Logical clients are mapped
    onto the available nodes (``client c -> sorted node ids[c mod #nodes]``), so
    10 or 1,000 clients run on however many SuperNodes exist; with
    ``federation.node_mapping=partition`` client ``c`` goes to the node whose
    ``partition-id`` is ``c`` (:mod:`strategies.node_map`, deployments). With
    ``proximal_mu > 0`` clients add FedProx's proximal term (Li et al., MLSys
    2020), as Flower's ``FedProx`` does by sending ``proximal-mu``.

    Extra records in a reply (strategy payloads such as FOT sketches) are taken
    out before Flower's averaging and handed to :meth:`aggregate_extras`. Those
    named ``sum-<name>`` are also summed over the round's clients and sent to
    every client next round (:class:`~strategies.extra_sums.ExtraSums`, FedCurv).

    Parameters
    ----------
    schedule : Schedule
        Which task each client trains in each round.
    run_config : dict
        The resolved experiment config (sent to clients as JSON once per message).
    num_clients : int
        Number of logical clients.
    clients_per_round : int | None, default None
        Clients sampled per round among the active ones (seeded by round); ``None`` = all.
    proximal_mu : float, default 0.0
        FedProx coefficient sent to clients.
    state_dir : str | None, default None
        Folder the clients' disk state store uses.
    aggregator : str, default "mean"
        Inner aggregator: ``mean`` (FedAvg) or a robust rule of :mod:`strategies.robust`
        (``median``, ``trimmed_mean``, ``krum``). Replies are validated first
        (:mod:`strategies.validation`): broken ones never reach it.
    trim_beta : float, default 0.1
        Fraction trimmed at each end by ``trimmed_mean``.
    krum_f : int, default 0
        Clients assumed malicious by ``krum``.
    **kwargs
        Passed to Flower's ``FedAvg`` (e.g. ``weighted_by_key``).
    """

    def __init__(
        self,
        *,
        schedule: Schedule,
        run_config: dict[str, Any],
        num_clients: int,
        clients_per_round: int | None = None,
        proximal_mu: float = 0.0,
        state_dir: str | None = None,
        aggregator: str = "mean",
        trim_beta: float = 0.1,
        krum_f: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("min_train_nodes", 1)
        kwargs.setdefault("min_available_nodes", 1)
        kwargs.setdefault("fraction_evaluate", 0.0)
        kwargs.setdefault("train_metrics_aggr_fn", metric_mean)  # float64, canonical order
        super().__init__(**kwargs)
        self.schedule = schedule
        self.run_config = run_config
        self.config_json = to_json(run_config)
        self.num_clients = num_clients
        self.clients_per_round = clients_per_round
        self.proximal_mu = proximal_mu
        self.state_dir = state_dir
        self.seed = int(run_config["seed"])
        self.last_clients: list[int] = []
        self.bytes_down = 0
        self.bytes_up = 0
        self.extra_sums = ExtraSums()
        check_aggregator(aggregator, trim_beta, krum_f)
        self.aggregator, self.trim_beta, self.krum_f = aggregator, trim_beta, krum_f
        self.validator = ReplyValidator(self.weighted_by_key)
        fed = run_config.get("federation", {})
        self.node_map = NodeMap(str(fed.get("node_mapping", "modulo")), num_clients,
                                wait_s=float(run_config.get("backend", {}).get("timeout_s", 600)))
        self.round_faults = RoundFaults()  # the last aggregate_train's failed / rejected clients
        self.sent_messages: list[Message] = []  # this round's messages: replies are matched to clients by id
        self.round_arrays: ArrayRecord | None = None  # this round's global arrays: replies must match them
        # unlearning (strategies/unlearning.py): clients that left, and keys added to every client config
        self.excluded_clients: set[int] = set()
        # replaces the averaging step when set (privacy: clip + mean + noise); payloads are stripped before it
        self.averager: Callable[[int, list[Message]], tuple[ArrayRecord | None, MetricRecord | None]] | None = None
        self.extra_client_config: dict[str, Any] = {}

    # ---- client selection -------------------------------------------------
    def sample_clients(self, server_round: int) -> list[int]:
        """The logical clients that train this round (deterministic in the seed and round)."""
        active = [c for c in range(self.num_clients)
                  if self.schedule.task_at(server_round, c) is not None and c not in self.excluded_clients]
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
        tr = self.run_config["train"]
        cfg: dict[str, Any] = {
            keys.SERVER_ROUND: server_round,
            keys.CLIENT_ID: client_id,
            keys.TASK_ID: task,
            keys.TASK_ROUND: self.schedule.task_round(server_round, client_id),
            keys.LAST_ROUND_OF_TASK: self.schedule.is_last_round_of_task(server_round, client_id),
            keys.LR: float(tr["lr"]),
            keys.LOCAL_EPOCHS: int(tr["local_epochs"]),
            keys.RUN_CONFIG_JSON: self.config_json,
        }
        if self.proximal_mu > 0:
            cfg[keys.PROXIMAL_MU] = float(self.proximal_mu)
        if self.state_dir:
            cfg[keys.STATE_DIR] = self.state_dir
        cfg.update(self.extra_client_config)
        return cfg

    def train_payload(self, server_round: int) -> dict[str, ArrayRecord | ConfigRecord]:
        """Extra records sent to every client this round (last round's ``sum-*`` sums, if any)."""
        return self.extra_sums.payload()

    # ---- Flower Strategy API ----------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """One message per sampled logical client with its own config record."""
        nodes = self.wait_for_nodes(grid)
        clients = self.sample_clients(server_round)
        self.last_clients = clients
        payload = self.train_payload(server_round)
        messages = []
        for c in clients:
            rec = ConfigRecord({**dict(config), **self.client_config(server_round, c)})
            content = RecordDict({keys.ARRAYS: arrays, keys.CONFIG: rec, **payload})
            messages.append(
                Message(content=content, message_type=MessageType.TRAIN, dst_node_id=self.node_for(c, nodes))
            )
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
        if self.averager is not None:  # privacy: Flower's DP wrapper clips, averages, noises (strategies/privacy.py)
            arrays, metrics = self.averager(server_round, replies)
        elif self.aggregator == "mean":
            arrays, metrics = fedavg([r.content for r in replies], self.weighted_by_key)
        else:
            contents = [r.content for r in replies]
            arrays = robust_aggregate(contents, self.aggregator, self.trim_beta, self.krum_f)
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

    # ---- checkpointed server state ------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Strategy state for checkpoints (subclasses extend it with ``super()``)."""
        return {"bytes_up": self.bytes_up, "bytes_down": self.bytes_down, "extra_sums": self.extra_sums.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.bytes_up = int(state.get("bytes_up", 0))
        self.bytes_down = int(state.get("bytes_down", 0))
        self.extra_sums.load_state_dict(state.get("extra_sums", {}))
