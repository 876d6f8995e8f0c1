"""Serving deletion requests during the continual run: the server side of :mod:`fedcl.unlearning`.

The ServerApp's round loop calls, per round, :meth:`UnlearningRunner.on_replies` (the
round's replies, before aggregation; only methods that keep individual updates look
at them) and :meth:`UnlearningRunner.after_aggregate` (serves the requests due at this
round: sample sets resolved, evaluation before, the method's step, the data exclusion
from then on, evaluation after, the gap to the retrain oracle). Methods reach the
clients only through the :class:`~fedcl.unlearning.base.Federation` calls implemented
here with ``query.unlearn`` messages.

Sequential requests: each request round is a *point*; a point's job is evaluated on its
own forget set (``before`` / ``after`` / ``oracle``) and, from the second point on, on
the union of everything forgotten so far (``cumulative``), each against the oracle of
that point (:mod:`fedcl.unlearning.oracle`).

Oracle choice: the retrain oracle is a separate run (``unlearning=retrain``, same
config and requests, ``unlearning.point`` per request round when there are several).
It saves its model in ``<run>/unlearning/oracle-round-<r>.pt``; a method's run compares
with it when ``unlearning.oracle_dir`` names that folder
(``simulations/benchmarks/unlearning.py`` runs the oracles first). Running the oracle
inside every run would double its cost.

Exclusion interface (read by every part that computes on client data): served client
requests go through :meth:`FCLFedAvg.exclude_clients`; forgotten classes and samples go
to every client's train config (``keys.FORGET_CLASSES``, ``protocol.FORGET_SAMPLES``);
the client turns them, with the run's held-out fraction, into
:class:`fedcl.unlearning.data.Exclusions` (``protocol.exclusions(instr)``).
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
from fedcl.unlearning.data import Exclusions, Samples, encode_samples, merge_samples
from fedcl.unlearning.evaluation import (
    EvalSets,
    Forgotten,
    Outputs,
    build_eval_sets,
    compare,
    outputs,
    report,
    task_drop,
)
from fedcl.unlearning.forget_sets import FILE, ForgetSets, candidates, lowest_loss, random_set
from fedcl.unlearning.metrics import accuracy
from fedcl.unlearning.oracle import ORACLE_DIR, load_oracle, oracle_path, save_oracle
from fedcl.unlearning.plots import plot_unlearning
from fedcl.unlearning.requests import Request, points
from strategies.aggregation import sum_arrays, sum_metrics, weighted_mean
from strategies.fedavg import FCLFedAvg

log = logging.getLogger("fedcl")
# config parts that must agree between a run and its oracle (everything that shapes the training)
_FINGERPRINT_KEYS = ("seed", "stream", "model", "method", "strategy", "federation", "train", "schedule")


def fingerprint(cfg: Config) -> str:
    """JSON of what must be equal between a method's run and its retrain oracle."""
    data = cfg.dump()
    fp = {k: data[k] for k in _FINGERPRINT_KEYS}
    fp["federation"] = {k: v for k, v in data["federation"].items() if k != "state_store"}
    fp["requests"] = [r.to_dict() for r in parse_requests(cfg.unlearning["requests"])]
    fp["holdout"] = cfg.unlearning["holdout"]
    return json.dumps(fp, sort_keys=True, separators=(",", ":"))


def _size(pool: list[tuple[int, int, torch.Tensor]]) -> int:
    return sum(int(idx.numel()) for _, _, idx in pool)


def _dicts(reqs: list[Request]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in reqs]


class UnlearningRunner(RoundHook):
    """Deletion requests, the unlearning method and its evaluation for one run (a round hook).

    Parameters
    ----------
    cfg : Config
        The run config (``unlearning``: ``name``, ``requests``, ``oracle_dir``,
        ``eval_samples``, ``data_access``, ``holdout``, ``forget_sets`` and the method's options).
    stream, schedule : Stream, Schedule
        The run's stream and schedule.
    strategy : FCLFedAvg
        The run's strategy: served requests exclude clients and add the forgotten
        classes and samples to every client's config through its methods.
    model : torch.nn.Module
        A model instance (copied) used for evaluation and worst-case selection.
    run_dir : Path
        The run folder (the oracle saves its models there, sample sets go there).
    """

    name = "unlearning"

    def __init__(self, cfg: Config, stream: Stream, schedule: Schedule, strategy: FCLFedAvg,
                 model: torch.nn.Module, run_dir: Path) -> None:
        ucfg = cfg.unlearning
        self.cfg, self.stream, self.schedule, self.strategy = cfg, stream, schedule, strategy
        self.method = build_unlearner(ucfg)
        self.requests: list[Request] = parse_requests(ucfg["requests"], schedule.total_rounds,
                                                      stream.num_clients, stream.num_classes)
        self.points = points(self.requests)
        point = getattr(self.method, "point", None)  # the retrain oracle of one request round
        if point is not None and point > len(self.points):
            raise ConfigError("unlearning.point", point, f"at most {len(self.points)} (the request rounds "
                              f"{self.points})")
        last = self.points[point - 1] if point is not None else None
        self.active = [r for r in self.requests if last is None or r.round <= last]
        self.per_set, self.seed, self.access = int(ucfg["eval_samples"]), cfg.seed, str(ucfg["data_access"])
        self.base = Exclusions.of_run(cfg)  # the held-out non-members only
        self.model = copy.deepcopy(model)
        self.device = next(self.model.parameters()).device
        self.timeout = cfg.backend.timeout_s
        self.fingerprint = fingerprint(cfg)
        self.sets = ForgetSets(ucfg["forget_sets"])
        self.served: list[Request] = []
        self.jobs: list[dict[str, Any]] = []
        self.t_start = time.perf_counter()
        self.run_dir = run_dir
        self._grid: Grid | None = None
        self._round, self._task = 0, 0
        self._round_sets: EvalSets | None = None
        self.oracle_dir = ucfg["oracle_dir"]
        self._check(ucfg)
        if self.method.needs_individual_updates:
            strategy.set_client_config(protocol.REPORT_CLIENT_ID, True)

    def _check(self, ucfg: dict[str, Any]) -> None:
        forgotten = {r.target for r in self.requests if r.kind == "class"}
        for task in self.stream.tasks:
            if self.stream.scenario != "domain_permuted" and set(task.classes) <= forgotten:
                raise ConfigError("unlearning.requests", ucfg.get("requests"),
                                  f"task {task.task_id} would lose all its classes {task.classes}; keep one")
        if self.oracle_dir and not self.method.removes_from_start:
            for r in {q.round for q in self.requests if q.round > 0}:
                if not oracle_path(self.oracle_dir, r).exists():
                    raise ConfigError("unlearning.oracle_dir", self.oracle_dir,
                                      f"a finished unlearning=retrain run with the same requests "
                                      f"({oracle_path(self.oracle_dir, r)} is missing)")
        worst = [r for r in self.active if r.kind == "worst"]
        if self.method.removes_from_start and worst and any(self.sets.get(r) is None for r in worst):
            raise ConfigError("unlearning.forget_sets", ucfg["forget_sets"],
                              f"the {FILE} of a run of this config with another method (worst-case sets are "
                              "chosen on the trained model, which the retrain oracle never has): run e.g. "
                              "unlearning=none first and pass its unlearning/" + FILE)

    # ---- sample sets and exclusions ------------------------------------------------------
    def _before(self, r: Request) -> list[Request]:
        return self.requests[: self.requests.index(r)]

    def _exclusions(self, reqs: list[Request]) -> Exclusions:
        """The held-out fraction plus everything ``reqs`` forget (their sample sets resolved)."""
        classes = sorted({q.target for q in reqs if q.kind == "class"})
        return Exclusions(self.base.seed, self.base.holdout, tuple(classes), self._samples(reqs))

    def _samples(self, reqs: list[Request]) -> Samples:
        return merge_samples(*(self._resolved(q)[0] for q in reqs if q.is_samples))

    def _resolved(self, r: Request) -> tuple[Samples, Samples]:
        got = self.sets.get(r)
        if got is None:
            raise RuntimeError(f"unlearning: the samples of {r.to_dict()} were not resolved")
        return got

    def _resolve(self, r: Request, model: torch.nn.Module | None) -> None:
        """Choose a sample request's forget set (and matched non-members) unless known."""
        if not r.is_samples or self.sets.get(r) is not None:
            return
        prior = self._before(r)
        excl = self._exclusions(prior)
        gone = {q.target for q in prior if q.kind == "client"}
        clients = [c for c in range(self.stream.num_clients) if c not in gone]
        tasks = self.schedule.seen_tasks(r.round)
        pool = candidates(self.stream, excl, clients, tasks)
        if r.kind == "random":
            self.sets.put(r, random_set(pool, r.target, self.seed, r), {})
            return
        assert model is not None, "worst-case sets are chosen on the trained model"
        held = candidates(self.stream, excl, clients, tasks, heldout=True)
        # the same lowest-loss *fraction* of the held-out pool: members and non-members from one quantile
        k = max(1, round(r.target * _size(held) / max(_size(pool), 1)))
        self.sets.put(r, lowest_loss(model, self.stream, pool, r.target, self.device),
                      lowest_loss(model, self.stream, held, k, self.device))

    def on_run_start(self, first_round: int) -> None:
        """Exclude data that must never train: the oracle's, round-0 requests, and (resume) served ones."""
        self.t_start = time.perf_counter()
        own = self.run_dir / ORACLE_DIR / FILE
        if first_round > 1 and not self.sets.given and own.exists():
            self.sets = ForgetSets(own)  # a resumed run keeps the sets it chose
        early = [r for r in self.active if self.method.removes_from_start or r.round == 0 or r.round < first_round]
        for r in early:
            self._resolve(r, None)
        self._exclude(early)

    def _exclude(self, reqs: list[Request]) -> None:
        for r in reqs:
            if r not in self.served:
                self.served.append(r)
        self.strategy.exclude_clients(r.target for r in self.served if r.kind == "client")
        classes = sorted({r.target for r in self.served if r.kind == "class"})
        if classes:
            self.strategy.set_client_config(keys.FORGET_CLASSES, classes)
        samples = self._samples(self.served)
        if samples:
            self.strategy.set_client_config(protocol.FORGET_SAMPLES, encode_samples(samples))

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
        due = [r for r in self.active if r.round == server_round]
        if not due:
            return arrays
        self._grid, self._round = grid, server_round
        self._task = self.schedule.global_task(server_round)
        state: State = dict(arrays.to_torch_state_dict())
        if self.method.removes_from_start:
            rec = self._oracle_point(server_round, due, state)
        else:
            self.model.load_state_dict(state)
            for r in due:
                self._resolve(r, self.model)
            if any(r.is_samples for r in due):
                self.sets.write(self.run_dir, self.fingerprint)
            rec, state = self._serve(server_round, due, state)
        self.jobs.append(rec)
        log.info("unlearning: served %s at round %d", rec["requests"], server_round)
        return array_record(state)

    def _forgotten(self, reqs: list[Request]) -> Forgotten:
        samples = [self._resolved(r) for r in reqs if r.is_samples]
        return Forgotten(clients=sorted(r.target for r in reqs if r.kind == "client"),
                         classes=sorted(r.target for r in reqs if r.kind == "class"),
                         samples=merge_samples(*(s for s, _ in samples)),
                         nonmembers=merge_samples(*(n for _, n in samples)),
                         any_nonmember=any(r.kind == "random" for r in reqs))

    def _eval_sets(self, reqs: list[Request], prior: list[Request]) -> EvalSets:
        gone = sorted({r.target for r in prior if r.kind == "client"})
        return build_eval_sets(self.stream, self.schedule.seen_tasks(self._round), self._forgotten(reqs),
                               self._exclusions(prior), gone, self.per_set, self.seed)

    def _oracle_point(self, server_round: int, due: list[Request], state: State) -> dict[str, Any]:
        """The oracle: this model never saw the data; its cost is every round so far."""
        elapsed = time.perf_counter() - self.t_start
        prior = [r for r in self.requests if r.round < server_round]
        sets = self._eval_sets(due, prior)
        after, _ = self._report(state, sets)
        exact = _dicts(self.active) == _dicts([r for r in self.requests if r.round <= server_round])
        if exact or getattr(self.method, "point", None) is None:  # point=k: only its own round
            save_oracle(self.run_dir, server_round, state, self.fingerprint, _dicts(self.active),
                        encode_samples(self._samples(self.active)), elapsed, self.strategy.subspace_bases())
        self._round_sets = sets
        return {"round": server_round, "point": self.points.index(server_round) + 1, "requests": _dicts(due),
                "current_task": self._task, "sizes": {k: sets.size(k) for k in sets.sets}, "after": after,
                "rounds": server_round, "seconds": elapsed, "exact": exact}

    def _job(self, server_round: int, due: list[Request], prior: list[Request]) -> UnlearnJob:
        gone = sorted({r.target for r in prior if r.kind == "client"})
        leaving = sorted(r.target for r in due if r.kind == "client")
        return UnlearnJob(
            requests=due, server_round=server_round, seen_tasks=self.schedule.seen_tasks(server_round),
            current_task=self._task,
            retain_clients=[c for c in range(self.stream.num_clients) if c not in gone + leaving],
            forget_clients=leaving, forget_classes=sorted(r.target for r in due if r.kind == "class"),
            dropped_classes=sorted({r.target for r in prior if r.kind == "class"}), lr=self.cfg.train.lr,
            task_of_round={q: self.schedule.global_task(q) for q in range(1, server_round + 1)},
            data_access=self.access, local_epochs=self.cfg.train.local_epochs,
            forget_samples=self._samples(due), dropped_samples=self._samples(prior))

    def _serve(self, server_round: int, due: list[Request], state: State) -> tuple[dict[str, Any], State]:
        """One point: evaluate, unlearn, exclude from then on, evaluate, compare with the oracle."""
        prior = [r for r in self.requests if r.round < server_round]
        sets = self._eval_sets(due, prior)
        cum = self._eval_sets(prior + due, []) if prior else None
        before, before_out = self._report(state, sets)
        cum_before = self._report(state, cum) if cum is not None else None
        t0 = time.perf_counter()
        state, rounds = self.method.unlearn(state, self._job(server_round, due, prior), self)
        seconds = time.perf_counter() - t0
        self._exclude(due)
        after, out = self._report(state, sets)
        rec: dict[str, Any] = {
            "round": server_round, "point": self.points.index(server_round) + 1, "requests": _dicts(due),
            "current_task": self._task, "sizes": {k: sets.size(k) for k in sets.sets}, "before": before,
            "after": after, "rounds": rounds, "seconds": seconds, **task_drop(before, after, self._task)}
        oracle = self._load_oracle(server_round) if self.oracle_dir else None
        if oracle is not None:
            rec["oracle"] = self._versus(oracle, sets, (after, out), (before, before_out))
        if cum is not None and cum_before is not None:
            cum_after = self._report(state, cum)
            rec["cumulative"] = {"sizes": {k: cum.size(k) for k in cum.sets}, "before": cum_before[0],
                                 "after": cum_after[0]}
            if oracle is not None:
                rec["cumulative"]["oracle"] = self._versus(oracle, cum, cum_after, cum_before)
        self._round_sets = cum if cum is not None else sets
        return rec, state

    def round_metrics(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any]:
        """Per-round forget / retain accuracy once a request was served (everything forgotten so far)."""
        if self._round_sets is None:
            return {}
        self.model.load_state_dict(arrays.to_torch_state_dict())
        s = self._round_sets.sets
        forget = s["test_forget"] if any(y.numel() for _, _, y in s["test_forget"]) else s["forget"]
        mh = self.stream.multi_head
        return {"unlearn_forget_acc": accuracy(*outputs(self.model, forget, mh, self.stream, self.device)),
                "unlearn_retain_acc": accuracy(*outputs(self.model, s["test_retain"], mh, self.stream, self.device))}

    # ---- evaluation ----------------------------------------------------------------------
    def _report(self, state: State, sets: EvalSets) -> tuple[dict[str, Any], Outputs]:
        self.model.load_state_dict(state)
        return report(self.model, sets, self.stream, self.device)

    def _load_oracle(self, server_round: int) -> dict[str, Any]:
        assert self.oracle_dir is not None
        upto = [r for r in self.requests if r.round <= server_round]
        return load_oracle(self.oracle_dir, server_round, self.fingerprint, _dicts(upto),
                           encode_samples(self._samples(upto)))

    def _versus(self, saved: dict[str, Any], sets: EvalSets, after: tuple[dict[str, Any], Outputs],
                before: tuple[dict[str, Any], Outputs]) -> dict[str, Any]:
        o_report, o_out = self._report(saved["state"], sets)
        return {"report": o_report, "rounds": saved["rounds"], "seconds": saved["seconds"],
                "gap_after": compare(after[0], o_report, after[1], o_out),
                "gap_before": compare(before[0], o_report, before[1], o_out),
                # FOT: how far this run's bases (built before the request with the forgotten data) are from the
                # oracle's, which never saw it (largest principal angle per layer, radians)
                "bases_angles": largest_angles(self.strategy.subspace_bases(), saved.get("bases", {}))}

    # ---- Federation (fedcl.unlearning.base) ----------------------------------------------
    def _query(self, clients: list[int], state: State, options: dict[str, Any]) -> list[Message]:
        assert self._grid is not None
        st = self.strategy
        nodes = st.wait_for_nodes(self._grid)
        arrays = array_record(state)
        extra = {keys.STATE_DIR: st.state_dir} if st.state_dir else {}

        def task(c: int) -> int:  # a client's own task (schedules may differ per client)
            t = self.schedule.task_at(self._round, c)
            return self._task if t is None else int(t)

        messages = [protocol.query(arrays, query_config(st.config_json, self._round, c, task(c), **extra), options,
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
        """Method, requests, data access, oracle and the evaluation of every served request."""
        return {
            "method": self.method.name,
            "needs_individual_updates": self.method.needs_individual_updates,
            "requests": _dicts(self.requests),
            "data_access": self.access,
            "holdout": self.base.holdout,
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
