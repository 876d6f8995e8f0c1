"""The continual round loop: send, aggregate, end tasks, serve the hooks, evaluate, log.

The loop knows the strategy, the evaluator and the tracker; everything else (privacy
accounting, SecAgg+ statistics, local forgetting, unlearning, trackers, console,
checkpoints) is a :class:`~fedcl.hooks.RoundHook` it calls by name.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from flwr.serverapp import Grid

import fedcl.keys as keys
from fedcl.config import Config
from fedcl.errors import ConfigError
from fedcl.metrics.client_stats import state_bytes_row, state_bytes_summary
from strategies.server.build import Run, build_run
from strategies.server.checkpoints import fresh_run_dir, resume
from strategies.server.rounds import send_train_round


def run_federation(grid: Grid, cfg: Config, run_dir: Path) -> dict[str, Any]:
    """Run the whole continual federation on ``grid``; write and return the summary.

    With ``cfg.resume`` set, the run continues from the newest checkpoint in
    ``run_dir/checkpoints`` at the next round; every random draw is seeded from
    (seed, purpose, client, round), so the result equals the uninterrupted run's.
    """
    run = build_run(grid, cfg, run_dir)
    first_round = _start(run)
    try:
        for rnd in range(first_round, run.schedule.total_rounds + 1):
            _round(run, rnd)
    finally:
        for hook in run.hooks:  # trackers are flushed even when the run stops on an error
            hook.close()
    return _finish(run, first_round)


def _start(run: Run) -> int:
    """A fresh run (clear the folder, evaluate the initial model) or a resumed one; the first round to run."""
    first_round = 1
    if run.cfg.resume:
        first_round, run.arrays, state = resume(run.cfg, run.run_dir)
        _load_states(run, state)
        if not run.cfg.quiet:
            print(f"resumed {run.run_dir} after round {first_round - 1} of {run.schedule.total_rounds}", flush=True)
    else:
        fresh_run_dir(run.run_dir)
        run.evaluator.load(run.arrays)
        run.tracker.set_initial_accuracy(run.evaluator.full())
    (run.run_dir / "config.json").write_text(json.dumps(run.cfg.dump(), indent=2, sort_keys=True))
    for hook in run.hooks:
        hook.on_run_start(first_round)
    return first_round


def _load_states(run: Run, state: dict[str, Any]) -> None:
    """The strategy's, tracker's and hooks' states of a checkpoint (a missing entry is a clear error)."""
    try:
        run.strategy.load_state_dict(state["strategy"])
        run.tracker.load_state_dict(state["tracker"])
        for hook in run.hooks:
            hook.load_state_dict(state["hooks"].get(hook.name, {}))
        run.elapsed_before = float(state["elapsed_s"])
    except KeyError as e:
        raise ConfigError("resume", run.cfg.resume, f"the newest checkpoint lacks the entry {e}: it was written by "
                          "another strategy or fedcl version; resume with the config and version that wrote it, "
                          "or start a new run") from e


def _round(run: Run, rnd: int) -> None:
    """One server round: train, aggregate, end tasks, hooks, evaluate, log."""
    t0 = time.perf_counter()
    strategy, hooks = run.strategy, run.hooks
    up0, down0 = strategy.bytes_up, strategy.bytes_down
    for hook in hooks:
        hook.on_round_start(rnd)
    # retried up to federation.round_retries times below federation.min_replies (RoundError after)
    messages, replies, attempts = send_train_round(strategy, run.grid, rnd, run.arrays, run.cfg.federation)
    failures = sum(1 for r in replies if r.has_error()) + len(messages) - len(replies)
    for hook in hooks:
        hook.on_replies(rnd, run.arrays, replies)
    state_bytes = state_bytes_row(replies)  # plain mean / max over clients, before aggregation
    new_arrays, train_metrics = strategy.aggregate_train(rnd, replies)
    if new_arrays is not None:
        run.arrays = new_arrays
    ended = [t for t in range(len(run.stream.tasks)) if run.schedule.task_end_round(t) == rnd]
    for task in ended:
        run.arrays = strategy.on_task_end(rnd, task, run.arrays, run.grid)
    for hook in hooks:
        run.arrays = hook.after_aggregate(rnd, run.arrays, run.grid)
    run.evaluator.load(run.arrays)
    accs, losses = run.evaluator.per_round(run.schedule.seen_tasks(rnd))
    extra: dict[str, Any] = {
        "num_clients": len(messages), "failures": failures,
        **strategy.round_faults.as_row(), "round_attempts": attempts,
        "train_loss": train_metrics.get(keys.TRAIN_LOSS) if train_metrics is not None else None,
        # every client metric, averaged by num-examples over the clients that report it (ema-beta-mean, ...)
        "client_metrics": dict(train_metrics) if train_metrics is not None else {}, **state_bytes,
        "bytes_up": strategy.bytes_up - up0, "bytes_down": strategy.bytes_down - down0,
        "seconds": time.perf_counter() - t0,
    }
    for hook in hooks:
        extra.update(hook.round_metrics(rnd, run.arrays))
    row = run.tracker.log_round(rnd, run.schedule.global_task(rnd), accs, losses, extra)
    if run.cfg.eval.full_test_at_task_end:
        for task in ended:
            run.tracker.log_task_end(task, rnd, run.evaluator.full())
    for hook in hooks:
        hook.on_row(rnd, row, ended)


def _finish(run: Run, first_round: int) -> dict[str, Any]:
    """``summary.json``, ``final.pt``, plots and every hook's files; the summary."""
    cfg, strategy, tracker, run_dir = run.cfg, run.strategy, run.tracker, run.run_dir
    extra: dict[str, Any] = {
        "wall_time_s": run.elapsed(), "bytes_up": strategy.bytes_up, "bytes_down": strategy.bytes_down,
        **state_bytes_summary(tracker.rows), "strategy_state": _scalars(strategy.state_dict()),
        "resumed_from_round": first_round - 1 if cfg.resume else None,
        "privacy": {"secure_aggregation": cfg.privacy.secure_aggregation},
    }
    for hook in run.hooks:
        for key, value in hook.summary().items():
            extra[key] = {**extra[key], **value} if isinstance(extra.get(key), dict) else value
    summary = tracker.write_summary({**extra, "config": cfg.dump()})
    torch.save({"arrays": run.arrays.to_torch_state_dict(), "strategy": strategy.state_dict()}, run_dir / "final.pt")
    # imported here, after the last round: matplotlib is ~0.3 s of CPU the first round need not wait for
    from fedcl.metrics.plots import write_run_plots
    from fedcl.metrics.stream_plots import write_stream_outputs

    plots = cfg.output.plots
    if plots:
        write_run_plots(tracker, run_dir)
    write_stream_outputs(run.stream, run.schedule, run_dir, plots=plots)
    for hook in run.hooks:
        hook.on_run_end(run_dir, plots)
    print(tracker.format_table(), flush=True)
    print(f"run folder: {run_dir}", flush=True)
    return summary


def _scalars(state: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of a strategy state (numbers, strings, dicts of numbers)."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        if isinstance(v, (int, float, str)):
            out[k] = v
        elif isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()):
            out[k] = dict(v)
    return out
