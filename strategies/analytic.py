"""Analytic federated continual learning: frozen backbone, summed statistics, ridge solve (``strategy=analytic``)."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from torch import nn

import fedcl.keys as keys
from fedcl.analytic import Statistics
from fedcl.analytic import messages as protocol
from fedcl.analytic.features import RandomExpansion, backbone_dim, backbone_of, load_backbone
from fedcl.analytic.head import accept_analytic_states, head_state
from fedcl.analytic.privacy import (
    add_gaussian_noise,
    client_sensitivity,
    sample_sensitivity,
    secagg_error,
    secagg_ranges,
)
from fedcl.analytic.server import AnalyticState
from fedcl.client.instruction import query_config
from fedcl.config.schema import AnalyticStrategy
from fedcl.data import build_stream
from fedcl.errors import RoundError
from fedcl.models import build_model
from fedcl.seeding import torch_generator
from strategies.aggregation import sum_arrays
from strategies.fedavg import FCLFedAvg
from strategies.round_faults import RoundFaults
from strategies.validation import ReplyValidator

log = logging.getLogger("fedcl")
State = dict[str, torch.Tensor]


class _Validator(ReplyValidator):
    """FedAvg's reply checks for the base rounds; the statistics record's checks for ``query.analytic`` rounds."""

    def __init__(self, weighted_by_key: str, dim: int, num_classes: int) -> None:
        super().__init__(weighted_by_key)
        self.dim, self.num_classes = dim, num_classes

    def split_train(self, sent: list[Message], replies: list[Message], reference: ArrayRecord | None,
                    log_faults: bool = True) -> tuple[list[Message], RoundFaults]:
        if sent and sent[0].metadata.message_type == protocol.ANALYTIC_TYPE:
            return self.split("analytic", sent, replies,
                              lambda c: protocol.check_reply(c, self.dim, self.num_classes), log_faults)
        return super().split_train(sent, replies, reference, log_faults)


class Analytic(FCLFedAvg):
    """Analytic federated continual learning: exact, order- and split-independent, one round per task.

    He et al., "AFL: A Single-Round Analytic Approach for Federated Learning with
    Pre-trained Models", CVPR 2025; Zhuang et al., "ACIL: Analytic Class-Incremental
    Learning with Absolute Memorization and Privacy Protection", NeurIPS 2022. FedAvg
    learns the backbone for ``base_rounds`` rounds of task 0 (or it is loaded from
    ``backbone``), then it is frozen. From then on no client trains: a client sampled in a
    round sends, for every task it has been on and not yet contributed, ``X^T X`` and
    ``X^T Y`` of its features (frozen backbone + the seeded random expansion,
    :mod:`fedcl.analytic.client`); the server adds them to its sums and solves
    ``W = (sum X^T X + gamma I)^-1 sum X^T Y`` by Cholesky. ``W`` equals the centralised
    ridge solution on the union of the data in the sums (the ledger), whatever the split,
    sampling or reply order, so nothing is forgotten and a deletion request is a downdate
    (``unlearning=analytic``). The global arrays hold the analytic head after the freeze
    (:func:`fedcl.analytic.head.head_state`). Under SecAgg+ only sums are seen; under
    central DP the summed statistics are noised with the sensitivity that
    ``feature_bound`` and ``max_samples`` give, and composed into the run's accountant.
    Design: ``docs/analytic.md``.

    Parameters
    ----------
    cfg : Config
        The run config; ``cfg.strategy`` is an :class:`~fedcl.config.schema.AnalyticStrategy`:
        ``base_rounds`` (null: every round of task 0), ``backbone`` (null), ``expansion_dim``
        (2048), ``activation`` (relu), ``gamma`` (1.0), ``feature_bound`` (null),
        ``max_samples`` (null), besides FedAvg's keys for the base rounds.
    **kwargs
        :class:`~strategies.fedavg.FCLFedAvg` arguments.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        st = self.cfg.strategy
        assert isinstance(st, AnalyticStrategy)
        self.st = st
        self.stream = build_stream(self.cfg.stream, self.num_clients, self.seed)
        C = self.stream.num_classes
        self.validator = _Validator(self.weighted_by_key, st.expansion_dim, C)
        model = build_model(self.cfg.model, self.stream.in_shape, C, self.stream.num_heads)
        self.loaded_body: State | None = None
        if st.backbone is not None:
            load_backbone(model, st.backbone)  # a DataError names strategy.backbone
            self.loaded_body = {f"body.{k}": v for k, v in backbone_of(model).state_dict().items()}
        self.expansion = RandomExpansion(backbone_dim(model), st.expansion_dim, st.activation, self.seed)
        default_base = 0 if st.backbone is not None else self.schedule.task_end_round(0)
        self.freeze_round = st.base_rounds if st.base_rounds is not None else default_base
        privacy = self.cfg.privacy
        self.dp = privacy.dp
        self.secure = privacy.secure_aggregation
        self.analytic = AnalyticState(st.expansion_dim, C, st.gamma, perturbed=self.dp is not None or self.secure)
        shares = [len(self.stream.client_indices(t, c)) for t in range(len(self.stream.tasks))
                  for c in range(self.num_clients)]
        self.share_bound = min(max(shares), st.max_samples or max(shares))  # samples per (client, task) reply
        self.body: ArrayRecord | None = None  # the frozen backbone, once frozen
        self.backbone_hash = ""
        self.base_clients: set[int] = set()
        self.base_classes: set[int] = set()
        self.weight: torch.Tensor | None = None
        self.stats_bytes = self.stats_seconds = self.solve_seconds = 0.0
        self.secagg_gram_error = 0.0
        self._grid: Grid | None = None
        self._shares: dict[int, list[int]] = {}  # this statistics round's (client -> tasks)
        self._scale = (1.0, 1.0, 1.0)  # this statistics round's SecAgg+ factors
        self._freeze_queried = False
        self._round = 0  # the latest round configured (coverage counts the tasks seen up to it)

    # ---- the model the server evaluates -----------------------------------------------------
    def server_model(self, model: nn.Module) -> nn.Module:
        """The evaluator's model loads the analytic head the global arrays hold after the freeze."""
        return accept_analytic_states(model)

    @property
    def frozen(self) -> bool:
        return self.body is not None

    def _freeze(self, arrays: ArrayRecord) -> None:
        """Keep the backbone (``body.*``) of ``arrays``: it never changes again."""
        self.body = ArrayRecord({k: v for k, v in arrays.items() if k.startswith("body.")})
        digest = hashlib.sha256()
        for k in sorted(self.body.keys()):
            digest.update(k.encode())
            digest.update(self.body[k].numpy().tobytes())
        self.backbone_hash = digest.hexdigest()[:16]
        log.info("analytic: backbone frozen after round %d (sha256 %s)", self.freeze_round, self.backbone_hash)

    def _with_loaded_backbone(self, arrays: ArrayRecord) -> ArrayRecord:
        if self.loaded_body is None:
            return arrays
        state = arrays.to_torch_state_dict()
        state.update({k: v.to(state[k].dtype) for k, v in self.loaded_body.items()})
        return ArrayRecord({k: Array(v.detach().cpu().numpy()) for k, v in state.items()})

    def model_state(self, weight: torch.Tensor) -> State:
        """The global model's state for a solution ``W``: the frozen backbone and the analytic head."""
        assert self.body is not None
        state = dict(self.body.to_torch_state_dict())
        state.update(head_state(self.expansion, weight, self._active_classes()))
        return state

    def _active_classes(self) -> list[int]:
        """Classes with data in the sums (under DP the counts are not released: the seen tasks' classes)."""
        if self.dp is None:
            return [int(c) for c in torch.nonzero(self.analytic.sums.class_counts > 0.5).flatten()]
        seen = {c for cs in self.analytic.ledger.values() for t in cs for c in self.stream.tasks[t].classes}
        return sorted(seen - set(self.analytic.dropped_classes))

    # ---- rounds -------------------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """FedAvg's messages in the base rounds; afterwards the statistics queries of the sampled clients."""
        self._grid, self._round = grid, server_round
        if server_round <= self.freeze_round:
            if server_round == 1:
                arrays = self._with_loaded_backbone(arrays)
            messages = list(super().configure_train(server_round, arrays, config, grid))
            self._note_base_clients(server_round, messages)
            return messages
        if not self.frozen:
            self._freeze(self._with_loaded_backbone(arrays))
        return self._learn_messages(server_round, grid, self.sample_clients(server_round))

    def _note_base_clients(self, server_round: int, messages: list[Message]) -> None:
        """Which clients and classes train the backbone (the unlearning report needs them)."""
        dropped = {int(c) for c in self._client_config.get(keys.FORGET_CLASSES, [])}
        for c in self.sample_clients(server_round):
            task = self.schedule.task_at(server_round, c)
            if task is None:
                continue
            self.base_clients.add(c)
            _, y = self.stream.client_data(task, c)
            self.base_classes |= {int(k) for k in torch.unique(y).tolist()} - dropped
        del messages

    def _tasks_so_far(self, server_round: int, client: int) -> list[int]:
        return sorted({t for q in range(1, server_round + 1) if (t := self.schedule.task_at(q, client)) is not None})

    def _learn_messages(self, server_round: int, grid: Grid, clients: list[int]) -> list[Message]:
        """One ``learn`` query per client with tasks it has been on and not contributed yet."""
        shares = {c: p for c in clients if (p := self.analytic.pending(c, self._tasks_so_far(server_round, c)))}
        return self._queries(server_round, grid, shares, "learn", {})

    def _queries(self, server_round: int, grid: Grid, shares: dict[int, list[int]], purpose: str,
                 only: dict[int, list[int]]) -> list[Message]:
        """One query per client of ``shares`` (its tasks; ``only`` its classes, for a class request)."""
        assert self.body is not None
        self._shares = shares
        nodes = self.wait_for_nodes(grid) if shares else []
        self._scale = self._secagg_scale(shares)  # one scale for the round: SecAgg+ sums the scaled records
        messages = []
        for c, tasks in sorted(shares.items()):
            opts = protocol.query_options(purpose, tasks, only_classes=only.get(c, []), scale=self._scale,
                                          release_counts=self.dp is None)
            rec = query_config(self.config_json, server_round, c, tasks[-1], **self._client_config, **opts)
            messages.append(protocol.stats_query(self.body, rec, self.node_for(c, nodes)))
        self.sent_messages, self.round_arrays = messages, None
        self.bytes_down += self.body.count_bytes() * len(messages)
        return messages

    def _reply_bound(self, shares: dict[int, list[int]]) -> int:
        """The most samples one reply of this round covers (per-(client, task) bound x tasks)."""
        return self.share_bound * max((len(t) for t in shares.values()), default=1)

    def _secagg_scale(self, shares: dict[int, list[int]]) -> tuple[float, float, float]:
        """Factors that map the statistics' bounds onto SecAgg+'s quantiser range (1 without SecAgg+)."""
        if not self.secure:
            return (1.0, 1.0, 1.0)
        sa = self.cfg.privacy.secagg
        assert sa is not None and self.st.feature_bound is not None
        r = secagg_ranges(self.st.feature_bound, self._reply_bound(shares))
        err = secagg_error(r["gram"], self.st.expansion_dim, max(len(shares), 1), sa.quantization_range,
                           sa.modulus_range)
        self.secagg_gram_error = max(self.secagg_gram_error, err.gram_spectral)
        s = sa.ranges.sketch  # the secure vector divides the record by this range (secagg_protocol.vectorize)
        return (s / r["gram"], s / r["cross"], s / r["counts"])

    def aggregate_train(
        self, server_round: int, replies: Any
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """FedAvg in the base rounds (freezing after the last); then add the statistics and solve."""
        if server_round <= self.freeze_round:
            arrays, metrics = super().aggregate_train(server_round, replies)
            if server_round == self.freeze_round:
                self._freeze(arrays if arrays is not None else self.round_arrays)  # type: ignore[arg-type]
            return arrays, metrics
        return self._learn(server_round, list(replies))

    def _learn(self, server_round: int, replies: list[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        stats, shares = self._collect(server_round, replies, "learn")
        if stats is None:
            return None, None
        self.analytic.add(stats, shares)
        return self._solved(), MetricRecord({"analytic-samples": float(stats.count),
                                             "analytic-clients": float(len(shares))})

    def on_task_end(self, server_round: int, task_id: int, arrays: ArrayRecord, grid: Grid) -> ArrayRecord:
        """At the freeze round, the statistics of the clients that just trained (so the task's row is analytic)."""
        if server_round != self.freeze_round or server_round < 1 or self._freeze_queried:
            return arrays
        self._freeze_queried = True
        messages = self._learn_messages(server_round, grid, self.sample_clients(server_round))
        if not messages:
            return arrays
        received = list(grid.send_and_receive(messages, timeout=self.reply_timeout_s))
        new, _ = self._learn(server_round, received)
        return new if new is not None else arrays

    def _collect(self, server_round: int, replies: list[Message], purpose: str
                 ) -> tuple[Statistics | None, dict[int, list[int]]]:
        """The sum of the round's sound replies (noised under DP) and the shares it covers."""
        t0 = time.perf_counter()
        sent, shares = self.sent_messages, self._shares
        good, faults = self.validator.split_train(sent, replies, None)
        self.round_faults = faults
        if not good:
            return None, {}
        if self.secure and len(good) < len(sent):
            # SecAgg+ returns the sum of the unmasked clients without saying which: the ledger could not match it
            log.warning("analytic: %d of %d clients missing from a secure %s round: its sum is discarded and "
                        "the clients are asked again", len(sent) - len(good), len(sent), purpose)
            return None, {}
        accepted = {c: shares[c] for c in faults.accepted if c in shares}
        self.stats_bytes += sum(protocol.reply_stats(r).count_bytes() for r in good)
        self.bytes_up += sum(protocol.reply_stats(r).count_bytes() for r in good)
        summed = protocol.unscale(sum_arrays(protocol.reply_stats(r) for r in good), self._scale)
        tol = max(protocol.COUNT_TOL, 2.0 * len(sent) * self._reply_bound(shares) / self._quantization())
        stats = protocol.parse_stats(summed, self.st.expansion_dim, self.stream.num_classes, count_tol=tol)
        if self.dp is not None:
            stats = self._noised(server_round, stats, shares, len(good), purpose)
        self.stats_seconds += time.perf_counter() - t0
        return stats, accepted

    def _quantization(self) -> float:
        sa = self.cfg.privacy.secagg
        return float(sa.quantization_range) if self.secure and sa is not None else float("inf")

    def _noised(self, server_round: int, stats: Statistics, shares: dict[int, list[int]], released: int,
                purpose: str) -> Statistics:
        """Central DP: Gaussian noise of the clients' sensitivity on the summed statistics; one accounted release."""
        assert self.dp is not None and self.dp.noise_multiplier is not None and self.st.feature_bound is not None
        z = self.dp.noise_multiplier
        bound = self.st.feature_bound
        sens = sample_sensitivity(bound) if self.st.dp_unit == "sample" else \
            client_sensitivity(bound, self._reply_bound(shares))
        gen = torch_generator(self.seed, "analytic-dp", purpose, server_round)
        gram, cross = add_gaussian_noise(stats.gram, stats.cross, z * sens.joint, gen)
        averager = self.averager
        assert averager is not None and hasattr(averager, "account_release")
        averager.account_release(z, released)
        return Statistics(gram, cross, stats.class_counts)

    def _solved(self) -> ArrayRecord:
        t0 = time.perf_counter()
        self.weight = self.analytic.solve()
        self.solve_seconds += time.perf_counter() - t0
        return ArrayRecord({k: Array(v.detach().cpu().numpy()) for k, v in self.model_state(self.weight).items()})

    # ---- deletion requests (fedcl.unlearning.analytic) ----------------------------------------
    def forget_statistics(self, server_round: int, clients: list[int], classes: list[int]) -> Statistics:
        """One round: the statistics of the data a request removes, from every holder in the ledger.

        A leaving client sends everything it contributed; for a class request every other
        contributor sends its samples of those classes. Raises ``RoundError`` unless every
        holder answered (a partial sum cannot be downdated exactly).
        """
        if not self.frozen or self._grid is None:
            raise RoundError("unlearning=analytic: a request before the backbone is frozen cannot be served by "
                             "the analytic head (see strategy.base_rounds)")
        ledger = self.analytic.ledger
        shares = {c: ledger[c] for c in clients if c in ledger}
        only = {c: list(classes) for c in ledger if c not in shares} if classes else {}
        shares.update({c: ledger[c] for c in only})
        msgs = self._queries(server_round, self._grid, shares, "forget", only)
        if not msgs:
            return Statistics.zeros(self.st.expansion_dim, self.stream.num_classes)
        received = list(self._grid.send_and_receive(msgs, timeout=self.reply_timeout_s))
        stats, accepted = self._collect(server_round, received, "forget")
        if stats is None or set(accepted) != set(shares):
            raise RoundError(f"unlearning=analytic: of the holders {sorted(shares)} only {sorted(accepted)} "
                             "answered; the downdate needs every one (the newest checkpoint is intact)")
        return stats

    def install(self, weight: torch.Tensor) -> State:
        """Adopt a solution computed by the unlearner; the new global model's state."""
        self.weight = weight
        return self.model_state(weight)

    def backbone_report(self, clients: list[int], classes: list[int]) -> dict[str, Any]:
        """Whether the forgotten data trained the backbone: ``True``, ``False`` or ``"unknown"``, and why."""
        reasons = [f"client {c} trained the backbone in rounds 1-{self.freeze_round}"
                   for c in clients if c in self.base_clients]
        reasons += [f"class {k} was in the data of the base rounds" for k in classes if k in self.base_classes]
        if self.st.backbone is not None:
            return {"backbone_saw_forgotten_data": "unknown" if not reasons else True,
                    "reason": "; ".join([*reasons, f"backbone loaded from {self.st.backbone}: its training data "
                                                   "is not known to fedcl"])}
        return {"backbone_saw_forgotten_data": bool(reasons),
                "reason": "; ".join(reasons) or f"the forgotten data was not in the base rounds 1-{self.freeze_round}"}

    # ---- state ---------------------------------------------------------------------------
    def coverage(self) -> float:
        """Samples of the ledger's shares / samples of every (non-forgotten client, task it has been on)."""
        total = held = 0
        last = max(self._round, 1)
        for c in range(self.num_clients):
            if c in self.analytic.forgotten_clients:
                continue
            tasks = self._tasks_so_far(last, c)
            sizes = {t: min(len(self.stream.client_indices(t, c)), self.share_bound) for t in tasks}
            total += sum(sizes.values())
            held += sum(n for t, n in sizes.items() if t in self.analytic.ledger.get(c, []))
        return held / total if total else 0.0

    def state_dict(self) -> dict[str, Any]:
        """FedAvg's counters, the sums and ledger, the frozen backbone and what trained it."""
        return {
            **super().state_dict(), "analytic": self.analytic.state_dict(),
            "body": None if self.body is None else self.body.to_torch_state_dict(),
            "backbone_hash": self.backbone_hash, "freeze_round": self.freeze_round,
            "base_clients": sorted(self.base_clients), "base_classes": sorted(self.base_classes),
            "freeze_queried": self._freeze_queried, "stats_bytes": self.stats_bytes,
            "stats_seconds": self.stats_seconds, "solve_seconds": self.solve_seconds,
            "secagg_gram_error": self.secagg_gram_error, "samples": self.analytic.samples(),
            "statistics_rounds": self.analytic.statistics_rounds, "expansion_dim": self.st.expansion_dim,
            "coverage": self.coverage(), "dp_unit": self.st.dp_unit if self.dp is not None else "none",
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (``W`` is solved again from the sums)."""
        super().load_state_dict(state)
        self.analytic.load_state_dict(state["analytic"])
        if state["body"] is not None:
            self.body = ArrayRecord({k: Array(v.numpy()) for k, v in state["body"].items()})
        self.backbone_hash = str(state["backbone_hash"])
        self.base_clients = {int(c) for c in state["base_clients"]}
        self.base_classes = {int(k) for k in state["base_classes"]}
        self._freeze_queried = bool(state["freeze_queried"])
        self.stats_bytes = float(state["stats_bytes"])
        self.stats_seconds = float(state["stats_seconds"])
        self.solve_seconds = float(state["solve_seconds"])
        self.secagg_gram_error = float(state["secagg_gram_error"])


def reply_bytes(dim: int, num_classes: int) -> int:
    """Bytes of one statistics reply's arrays: ``8 (d (d + 1) / 2 + d C + C)`` (float64)."""
    return 8 * (dim * (dim + 1) // 2 + dim * num_classes + num_classes)


__all__ = ["Analytic", "reply_bytes"]
