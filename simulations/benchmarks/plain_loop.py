"""The federated continual run as a plain single-process PyTorch loop (no Flower, no Ray, no messages).

The reference for the framework-overhead benchmark (``overhead.py``). It does
what :func:`strategies.server.loop.run_federation` and the ClientApp's ``train``
handler (:mod:`fedcl.client.train`) do, with the same code for every step that
computes something: the stream (:func:`fedcl.data.build_stream`), the schedule
and the client sampling rule (``FCLFedAvg.sample_clients``), the model, the
seeds (:mod:`fedcl.seeding`), the method and the trainer
(:func:`fedcl.trainer.train_local`), FedAvg's weighted average (McMahan et al.,
AISTATS 2017) in client order, accumulated in float64 (:mod:`strategies.aggregation`),
and the evaluator (:class:`strategies.server.evaluator.CentralEvaluator`). Only the
transport, the disk state store and the run outputs (checkpoints, plots) are
left out: client states stay in a dict.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fedcl.config import Config
from fedcl.data import Schedule, Stream, build_stream, make_schedule
from fedcl.methods import build_method
from fedcl.methods.base import TaskContext
from fedcl.metrics import Tracker
from fedcl.models import build_model
from fedcl.seeding import seed_globals, torch_generator
from fedcl.trainer import TrainConfig, pick_device, train_local

# trains one round's clients: (round, client ids, global weights) -> (weights, examples) per client, in client order
RoundTrainer = Callable[[int, list[int], dict[str, np.ndarray]], list[tuple[dict[str, np.ndarray], int]]]


def plain_federation(cfg: Config, on_round: Callable[[int], None] | None = None,
                     train_round: RoundTrainer | None = None) -> dict[str, Any]:
    """Run ``cfg`` (a validated config with ``strategy=fedavg``) in this process; return the summary.

    Parameters
    ----------
    cfg : Config
        Resolved experiment config.
    on_round : callable, optional
        Called with the round number after each round (the benchmark times the first one).
    train_round : callable, optional
        Trains a round's clients elsewhere (``plain_parallel.py``: worker processes); default: here, one by one.
    """
    from strategies.fedavg import FCLFedAvg
    from strategies.server.evaluator import CentralEvaluator

    t_start, seed, fed = time.perf_counter(), cfg.seed, cfg.federation
    stream = build_stream(cfg.stream, fed.num_clients, seed)
    schedule = make_schedule(cfg.schedule, len(stream.tasks), fed.rounds_per_task, fed.num_clients, seed)
    device = pick_device(cfg.device)
    torch.manual_seed(seed)
    eval_model = build_model(cfg.model, stream.in_shape, stream.num_classes, stream.num_heads).to(device)
    global_np = {k: v.detach().cpu().numpy().copy() for k, v in eval_model.state_dict().items()}
    sampler = FCLFedAvg(cfg=cfg, schedule=schedule, state_dir=None)
    evaluator = CentralEvaluator(stream, eval_model, cfg.eval.subset_size, cfg.eval.batch_size)
    tracker = Tracker(len(stream.tasks), None)
    tracker.set_initial_accuracy(evaluator.full())
    tr = cfg.train
    train_cfg = TrainConfig(lr=tr.lr, local_epochs=tr.local_epochs, batch_size=tr.batch_size, momentum=tr.momentum,
                            weight_decay=tr.weight_decay, proximal_mu=0.0)
    states: dict[int, dict[str, Any]] = {}
    task_end = {t: schedule.task_end_round(t) for t in range(len(stream.tasks))}
    for rnd in range(1, schedule.total_rounds + 1):
        t0 = time.perf_counter()
        clients = [int(c) for c in sampler.sample_clients(rnd)]
        weighted = train_round(rnd, clients, global_np) if train_round is not None else [
            _client_round(cfg, stream, schedule, device, global_np, states, c, rnd, train_cfg) for c in clients]
        if weighted:
            # FedAvg in client order, accumulated in float64 and cast back once (strategies/aggregation.py)
            total = float(sum(n for _, n in weighted))
            agg: dict[str, np.ndarray] = {}
            for arrays, n in weighted:
                for k, v in arrays.items():
                    term = v.astype(np.float64) * (n / total)
                    agg[k] = term if k not in agg else agg[k] + term
            global_np = {k: v.astype(global_np[k].dtype) for k, v in agg.items()}
        evaluator.model.load_state_dict({k: torch.from_numpy(v) for k, v in global_np.items()})
        accs, losses = evaluator.per_round(schedule.seen_tasks(rnd))
        tracker.log_round(rnd, schedule.global_task(rnd), accs, losses,
                          {"num_clients": len(weighted), "seconds": time.perf_counter() - t0})
        if cfg.eval.full_test_at_task_end:
            for task, end_round in task_end.items():
                if end_round == rnd:
                    tracker.log_task_end(task, rnd, evaluator.full())
        if on_round is not None:
            on_round(rnd)
    return tracker.summary({"wall_time_s": time.perf_counter() - t_start})


def _client_round(cfg: Config, stream: Stream, schedule: Schedule, device: torch.device,
                  global_np: dict[str, np.ndarray], states: dict[int, dict[str, Any]], c: int, rnd: int,
                  train_cfg: TrainConfig) -> tuple[dict[str, np.ndarray], int]:
    """One client's round, the steps of the ClientApp's train handler in its order; its weights and sample count."""
    task = schedule.task_at(rnd, c)
    assert task is not None
    seed = cfg.seed
    # the global RNG draws must match the handler's (fedcl/client/instruction.py: workspace)
    seed_globals(seed, "client", c, rnd, "train")
    model = build_model(cfg.model, stream.in_shape, stream.num_classes, stream.num_heads).to(device)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in global_np.items()})
    x, y = (t.to(device) for t in stream.client_data(task, c))
    saved = states.get(c, {})
    method = build_method(cfg.method)
    method.load_state_dict(copy.deepcopy(saved.get("method", {})))
    seen = list(saved.get("seen_tasks", []))
    new_task = task not in seen
    if new_task:
        seen.append(task)
    ctx = TaskContext(
        model=model, task_id=task, client_id=c, server_round=rnd,
        task_round=schedule.task_round(rnd, c), last_round_of_task=schedule.is_last_round_of_task(rnd, c),
        x=x, y=y, device=device, num_classes=stream.num_classes,
        task_classes=list(stream.tasks[task].classes), seen_tasks=seen,
        global_params={k: v.detach().clone() for k, v in model.named_parameters()},
        generator=torch_generator(seed, "batches", c, rnd),
        multi_head=stream.multi_head, payload={},
        task_data=lambda t: tuple(z.to(device) for z in stream.client_data(t, c)),  # type: ignore[misc]
        classes_of=lambda t: list(stream.tasks[t].classes),
    )
    if new_task:
        method.before_task(ctx)
    result = train_local(method, ctx, train_cfg)
    if ctx.last_round_of_task:
        method.after_task(ctx)
    states[c] = {"method": copy.deepcopy(method.state_dict()), "seen_tasks": seen}
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}, int(result.num_examples)
