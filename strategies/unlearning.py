"""Serving deletion requests during the continual run: the server side of :mod:`fedcl.unlearning`.

The ServerApp's round loop calls, per round, :meth:`UnlearningRunner.observe` (the
round's replies, before aggregation; only methods that keep individual updates look
at them) and :meth:`UnlearningRunner.after_round` (serves the requests due at this
round: evaluation before, the method's step, the data exclusion from then on,
evaluation after, the gap to the retrain oracle). Methods reach the clients only
through the :class:`~fedcl.unlearning.base.Federation` calls implemented here with
``query.unlearn`` messages.

Oracle choice: the retrain oracle is a separate run (``unlearning=retrain``, same
config and requests). It saves its model at every request round in
``<run>/unlearning/oracle-round-<r>.pt``; a method's run compares with it when
``unlearning.oracle_dir`` names that folder (``simulations/benchmarks/unlearning.py``
runs the oracle first). Running the oracle inside every run would double its cost.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Message
from flwr.serverapp import Grid

import fedcl.keys as keys
from fedcl.client.instruction import query_config
from fedcl.config import Config
from fedcl.data import Schedule, Stream
from fedcl.errors import ConfigError
from fedcl.hooks import RoundHook
from fedcl.records import array_record
from fedcl.subspace import largest_angles
from fedcl.unlearning import build_unlearner, parse_requests, protocol
from fedcl.unlearning.base import State, UnlearnJob
from fedcl.unlearning.evaluation import EvalSets, build_eval_sets, compare, outputs, report, task_drop
from fedcl.unlearning.metrics import accuracy
from fedcl.unlearning.plots import plot_unlearning
from fedcl.unlearning.requests import Request
from strategies.aggregation import sum_arrays, sum_metrics, weighted_mean
from strategies.fedavg import FCLFedAvg

log = logging.getLogger("fedcl")
ORACLE_DIR = "unlearning"
# config parts that must agree between a run and its oracle (everything that shapes the training)
_FINGERPRINT_KEYS = ("seed", "stream", "model", "method", "strategy", "federation", "train", "schedule")


def fingerprint(cfg: Config) -> str:
    """JSON of what must be equal between a method's run and its retrain oracle."""
    data = cfg.dump()
    fp = {k: data[k] for k in _FINGERPRINT_KEYS}
    fp["federation"] = {k: v for k, v in data["federation"].items() if k != "state_store"}
    fp["requests"] = [r.to_dict() for r in parse_requests(cfg.unlearning["requests"])]
    return json.dumps(fp, sort_keys=True, separators=(",", ":"))


def oracle_path(run_dir: str | Path, server_round: int) -> Path:
    return Path(run_dir) / ORACLE_DIR / f"oracle-round-{server_round}.pt"


class UnlearningRunner(RoundHook):
    """Deletion requests, the unlearning method and its evaluation for one run (a round hook).

    Parameters
    ----------
    cfg : Config
        The run config (``unlearning``: ``name``, ``requests``, ``oracle_dir``,
        ``eval_samples`` and the method's options).
    stream, schedule : Stream, Schedule
        The run's stream and schedule.
    strategy : FCLFedAvg
        The run's strategy: served requests exclude clients and add the forgotten
        classes to every client's config through its methods.
    model : torch.nn.Module
        A model instance (copied) used for evaluation.
    run_dir : Path
        The run folder (the oracle saves its models there).
    """

    name = "unlearning"

    def __init__(self, cfg: Config, stream: Stream, schedule: Schedule, strategy: FCLFedAvg,
                 model: torch.nn.Module, run_dir: Path) -> None:
        ucfg = cfg.unlearning
        self.cfg, self.stream, self.schedule, self.strategy = cfg, stream, schedule, strategy
        self.method = build_unlearner(ucfg)
        self.requests: list[Request] = parse_requests(ucfg["requests"], schedule.total_rounds,
                                                      stream.num_clients, stream.num_classes)
        self.per_set = int(ucfg["eval_samples"])
        self.seed = cfg.seed
        self.model = copy.deepcopy(model)
        self.device = next(self.model.parameters()).device
        self.timeout = cfg.backend.timeout_s
        self.fingerprint = fingerprint(cfg)
        self.served: list[Request] = []
        self.jobs: list[dict[str, Any]] = []
        self.t_start = time.perf_counter()
        self.run_dir = run_dir
        self._grid: Grid | None = None
        self._round, self._task = 0, 0
        self._round_sets: EvalSets | None = None
        self.oracle_dir = ucfg["oracle_dir"]
        forgotten = {r.target for r in self.requests if r.kind == "class"}
        for task in stream.tasks:
            if stream.scenario != "domain_permuted" and set(task.classes) <= forgotten:
                raise ConfigError("unlearning.requests", ucfg.get("requests"),
                                  f"task {task.task_id} would lose all its classes {task.classes}; keep one")
        if self.oracle_dir and not self.method.removes_from_start:
            for r in {q.round for q in self.requests if q.round > 0}:
                if not oracle_path(self.oracle_dir, r).exists():
                    raise ConfigError("unlearning.oracle_dir", self.oracle_dir,
                                      f"a finished unlearning=retrain run with the same requests "
                                      f"({oracle_path(self.oracle_dir, r)} is missing)")
        if self.method.needs_individual_updates:
            strategy.set_client_config(protocol.REPORT_CLIENT_ID, True)

    # ---- exclusions ----------------------------------------------------------------------
    def on_run_start(self, first_round: int) -> None:
        """Exclude data that must never train: the oracle's, round-0 requests, and (resume) served ones."""
        self.t_start = time.perf_counter()
        early = [r for r in self.requests if self.method.removes_from_start or r.round == 0 or r.round < first_round]
        self._exclude(early)

    def _exclude(self, reqs: list[Request]) -> None:
        for r in reqs:
            if r not in self.served:
                self.served.append(r)
        self.strategy.exclude_clients(r.target for r in self.served if r.kind == "client")
        classes = sorted({r.target for r in self.served if r.kind == "class"})
        if classes:
            self.strategy.set_client_config(keys.FORGET_CLASSES, classes)

    # ---- round hooks ---------------------------------------------------------------------
    def on_replies(self, server_round: int, arrays: ArrayRecord, replies: list[Message]) -> None:
        """Hand the round's individual updates to a method that keeps them (FedEraser)."""
        if not self.method.needs_individual_updates:
            return
        before = arrays.to_torch_state_dict()
        updates: dict[int, tuple[State, int]] = {}
        for r in replies:
            cid = None if r.has_error() else protocol.reporting_client(r)
            if cid is None:
                continue
            w = r.content.array_records[keys.ARRAYS].to_torch_state_dict()
            n = int(r.content.metric_records[keys.METRICS][keys.NUM_EXAMPLES])  # type: ignore[arg-type]
            updates[cid] = ({k: w[k] - before[k] for k in w if w[k].is_floating_point()}, n)
        self.method.observe_round(server_round, before, updates)

    def after_aggregate(self, server_round: int, arrays: ArrayRecord, grid: Grid) -> ArrayRecord:
        """Serve the requests due at this round; return the (unlearned) global arrays."""
        due = [r for r in self.requests if r.round == server_round]
        if not due:
            return arrays
        self._grid, self._round = grid, server_round
        self._task = self.schedule.global_task(server_round)
        elapsed = time.perf_counter() - self.t_start
        prior = sorted({r.target for r in self.served if r.kind == "class" and r not in due})
        forget_clients = sorted(r.target for r in due if r.kind == "client")
        forget_classes = sorted(r.target for r in due if r.kind == "class")
        gone_before = sorted({r.target for r in self.served if r.kind == "client" and r not in due})
        job = UnlearnJob(
            requests=due, server_round=server_round, seen_tasks=self.schedule.seen_tasks(server_round),
            current_task=self._task,
            retain_clients=[c for c in range(self.stream.num_clients) if c not in gone_before + forget_clients],
            forget_clients=forget_clients, forget_classes=forget_classes, dropped_classes=prior,
            lr=self.cfg.train.lr,
            task_of_round={q: self.schedule.global_task(q) for q in range(1, server_round + 1)},
        )
        sets = build_eval_sets(self.stream, job.seen_tasks, forget_clients, forget_classes, prior, gone_before,
                               self.per_set, self.seed)
        state: State = dict(arrays.to_torch_state_dict())
        rec: dict[str, Any] = {"round": server_round, "requests": [r.to_dict() for r in due],
                               "current_task": self._task, "sizes": {k: sets.size(k) for k in sets.sets}}
        if self.method.removes_from_start:
            # the oracle: this model never saw the data; its cost is every round so far
            after, logits = self._report(state, sets)
            rec.update(after=after, rounds=server_round, seconds=elapsed)
            self._save_oracle(server_round, state, rec)
        else:
            before, before_logits = self._report(state, sets)
            t0 = time.perf_counter()
            state, rounds = self.method.unlearn(state, job, self)
            seconds = time.perf_counter() - t0
            self._exclude(due)
            after, logits = self._report(state, sets)
            rec.update(before=before, after=after, rounds=rounds, seconds=seconds,
                       **task_drop(before, after, self._task))
            if self.oracle_dir:
                rec["oracle"] = self._oracle(server_round, sets, after, before, logits, before_logits)
        self._round_sets = sets
        self.jobs.append(rec)
        log.info("unlearning: served %s at round %d", rec["requests"], server_round)
        return array_record(state)

    def round_metrics(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any]:
        """Per-round forget / retain accuracy once a request was served (the split evaluation)."""
        if self._round_sets is None:
            return {}
        self.model.load_state_dict(arrays.to_torch_state_dict())
        s = self._round_sets.sets
        forget = s["test_forget"] if any(y.numel() for _, _, y in s["test_forget"]) else s["forget"]
        mh = self.stream.multi_head
        return {"unlearn_forget_acc": accuracy(*outputs(self.model, forget, mh, self.stream, self.device)),
                "unlearn_retain_acc": accuracy(*outputs(self.model, s["test_retain"], mh, self.stream, self.device))}

    # ---- evaluation ----------------------------------------------------------------------
    def _report(self, state: State, sets: EvalSets) -> tuple[dict[str, Any], torch.Tensor]:
        self.model.load_state_dict(state)
        return report(self.model, sets, self.stream, self.device)

    def _save_oracle(self, server_round: int, state: State, rec: dict[str, Any]) -> None:
        path = oracle_path(self.run_dir, server_round)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": {k: v.cpu() for k, v in state.items()}, "fingerprint": self.fingerprint,
                    "rounds": server_round, "seconds": rec["seconds"],
                    "bases": {k: v.cpu() for k, v in self.strategy.subspace_bases().items()}}, path)

    def _oracle(self, server_round: int, sets: EvalSets, after: dict[str, Any], before: dict[str, Any],
                logits: torch.Tensor, before_logits: torch.Tensor) -> dict[str, Any]:
        assert self.oracle_dir is not None
        saved = torch.load(oracle_path(self.oracle_dir, server_round), map_location="cpu", weights_only=False)
        if saved["fingerprint"] != self.fingerprint:
            raise ConfigError("unlearning.oracle_dir", self.oracle_dir,
                              "the oracle run of this very config (seed, stream, model, method, federation, train, "
                              "requests); only unlearning.name/params may differ")
        o_report, o_logits = self._report(saved["state"], sets)
        return {"report": o_report, "rounds": saved["rounds"], "seconds": saved["seconds"],
                "gap_after": compare(after, o_report, logits, o_logits),
                "gap_before": compare(before, o_report, before_logits, o_logits),
                # FOT: how far this run's bases (built before the request with the forgotten data) are from the
                # oracle's, which never saw it (largest principal angle per layer, radians)
                "bases_angles": largest_angles(self.strategy.subspace_bases(), saved.get("bases", {}))}

    # ---- Federation (fedcl.unlearning.base) ----------------------------------------------
    def _query(self, clients: list[int], state: State, options: dict[str, Any]) -> list[Message]:
        assert self._grid is not None
        st = self.strategy
        nodes = st.wait_for_nodes(self._grid)
        arrays = array_record(state)
        messages = [protocol.query(arrays, query_config(st.config_json, self._round, c, self._task), options,
                                   st.node_for(c, nodes)) for c in clients]
        st.bytes_down += arrays.count_bytes() * len(messages)
        received = list(self._grid.send_and_receive(messages, timeout=self.timeout))
        # sound replies only (NaN / Inf would poison the sums), in canonical order (strategies/aggregation.py)
        replies, faults = st.validator.split_query(f"unlearn:{options.get('action')}", messages, received)
        if len(replies) < len(messages):
            log.warning("unlearning: %d of %d clients gave no sound answer to %s (%s)", len(messages) - len(replies),
                        len(messages), options.get("action"), faults.as_row()["fault_reasons"])
        if messages and not replies:
            raise RuntimeError(f"unlearning: no client answered the '{options.get('action')}' query")
        for r in replies:
            st.bytes_up += sum(a.count_bytes() for a in r.content.array_records.values())
        return replies

    @staticmethod
    def _metrics(replies: list[Message]) -> dict[str, float]:
        return sum_metrics(mr for r in replies for mr in r.content.metric_records.values())

    def sums(self, action: str, clients: list[int], state: State,
             options: dict[str, Any]) -> tuple[dict[str, State], dict[str, float]]:
        replies = self._query(clients, state, options)
        names = sorted({name for r in replies for name in r.content.array_records})
        sums = {name: sum_arrays(r.content.array_records[name] for r in replies if name in r.content.array_records)
                for name in names}
        return ({n: {k: torch.from_numpy(v.astype(np.float32)) for k, v in s.items()} for n, s in sums.items()},
                self._metrics(replies))

    def weighted_mean(self, action: str, clients: list[int], state: State,
                      options: dict[str, Any]) -> tuple[State | None, dict[str, float]]:
        replies = self._query(clients, state, options)
        metrics = self._metrics(replies)
        weights = [float(r.content.metric_records[keys.METRICS][keys.NUM_EXAMPLES]) for r in replies]  # type: ignore[arg-type]
        if sum(weights) <= 0:
            return None, metrics
        mean = weighted_mean([r.content.array_records[keys.ARRAYS] for r in replies], weights)
        return {k: v.to(state[k].dtype) for k, v in mean.to_torch_state_dict().items()}, metrics

    def individual(self, action: str, clients: list[int], state: State,
                   options: dict[str, Any]) -> dict[int, tuple[State, int]]:
        replies = self._query(clients, state, {**options, "report_client": True})
        out: dict[int, tuple[State, int]] = {}
        for r in replies:
            cid = protocol.reporting_client(r)
            assert cid is not None, "an individual-update reply without its client id"
            n = int(r.content.metric_records[keys.METRICS][keys.NUM_EXAMPLES])  # type: ignore[arg-type]
            out[cid] = (dict(r.content.array_records[keys.ARRAYS].to_torch_state_dict()), n)
        return out

    # ---- outputs -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The ``unlearning`` section of ``summary.json`` (only when the run has requests)."""
        return {"unlearning": self.report()} if self.requests else {}

    def report(self) -> dict[str, Any]:
        """Method, requests, oracle and the evaluation of every served request."""
        return {
            "method": self.method.name,
            "needs_individual_updates": self.method.needs_individual_updates,
            "requests": [r.to_dict() for r in self.requests],
            "oracle_dir": self.oracle_dir,
            "jobs": self.jobs,
            "method_state": self.method.state_dict(),
        }

    def on_run_end(self, run_dir: Path, plots: bool) -> None:
        """``unlearning.json`` and ``unlearning.png`` in the run folder."""
        if not self.requests:
            return
        (run_dir / "unlearning.json").write_text(json.dumps(self.report(), indent=2, default=_json))
        if plots and self.jobs:
            plot_unlearning(self.jobs, run_dir / "unlearning.png", self.method.name)


def _json(obj: Any) -> Any:
    if isinstance(obj, (np.generic,)):
        return obj.item()
    return str(obj)


__all__ = ["UnlearningRunner", "fingerprint", "oracle_path"]
