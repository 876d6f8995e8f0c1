"""The Flower ServerApp: the continual round loop, central evaluation and run outputs.

Config comes from ``context.run_config`` (``[tool.flwr.app.config]`` in
pyproject.toml, overridable with ``flwr run . -c``):

* ``config-file``: a resolved config written by ``python -m simulations.run``;
* otherwise ``experiment`` and ``overrides`` (Hydra override strings) are
  composed from ``simulations/conf`` exactly as the Hydra launcher does;
* ``run-dir``: where outputs go (default ``runs/<timestamp>``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from flwr.app import Array, ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from fedcl.checkpoint import (
    CKPT_DIR,
    CLIENT_DIR,
    CheckpointPolicy,
    latest_checkpoint,
    load_checkpoint,
    load_run_config,
    restore_client_states,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fedcl.config import compose, validate
from fedcl.data import Schedule, Stream, build_schedule, build_stream
from fedcl.errors import ConfigError
from fedcl.metrics import Tracker, forgetting
from fedcl.metrics.client_stats import state_bytes_row, state_bytes_summary
from fedcl.metrics.local import LocalForgetting
from fedcl.metrics.plots import write_run_plots
from fedcl.metrics.stream_plots import write_stream_outputs
from fedcl.models import build_model
from fedcl.trainer import evaluate, pick_device
from simulations.loggers import RoundLoggers
from simulations.progress import RoundClock, quiet_flower_logs
from strategies import build_strategy
from strategies.round_runner import send_train_round
from strategies.unlearning import UnlearningRunner

app = ServerApp()
log = logging.getLogger("fedcl")


def load_config(run_config: dict[str, Any]) -> dict[str, Any]:
    """The resolved experiment config named by the run config."""
    path = str(run_config.get("config-file", "") or "")
    if path:
        import yaml

        with open(path) as fh:
            cfg = validate(yaml.safe_load(fh))
    else:
        cfg = compose(str(run_config.get("overrides", "") or ""), str(run_config.get("experiment", "") or "") or None)
    if cfg.get("resume"):
        # a resumed run is the killed run: its own resolved config, whatever else was composed
        cfg = validate(load_run_config(Path(str(cfg["resume"]))))
    return cfg


def resolve_run_dir(cfg: dict[str, Any], run_config: dict[str, Any]) -> Path:
    """``run-dir`` from the run config, else ``resume``, else ``output.dir``, else ``runs/<timestamp>``."""
    run_dir = str(run_config.get("run-dir", "") or "") or cfg.get("resume") or cfg["output"].get("dir")
    if not run_dir:
        run_dir = str(Path.cwd() / "runs" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    path = Path(run_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


class CentralEvaluator:
    """Evaluates the global model on cached per-task test data (subsets every round).

    Parameters
    ----------
    stream : Stream
        The task stream (the server's copy of the test splits).
    model : torch.nn.Module
        A model instance the global weights are loaded into.
    subset_size : int | None
        Size of the fixed per-task evaluation subset used every round.
    batch_size : int
        Evaluation batch size.
    """

    def __init__(self, stream: Stream, model: torch.nn.Module, subset_size: int | None, batch_size: int) -> None:
        self.stream, self.model = stream, model
        self.subset_size, self.batch_size = subset_size, batch_size
        self.device = next(model.parameters()).device
        self._subsets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def load(self, arrays: ArrayRecord) -> None:
        self.model.load_state_dict(arrays.to_torch_state_dict())

    def _eval(self, task: int, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
        classes = self.stream.tasks[task].classes if self.stream.multi_head else None
        return evaluate(self.model, *data, task_id=task, multi_head=self.stream.multi_head,
                        task_classes=classes, batch_size=self.batch_size, device=self.device)

    def per_round(self, tasks: list[int]) -> tuple[dict[int, float], dict[int, float]]:
        """Accuracy and loss on each task's fixed evaluation subset."""
        accs, losses = {}, {}
        for t in tasks:
            if t not in self._subsets:
                x, y = self.stream.eval_data(t, self.subset_size)
                self._subsets[t] = (x.to(self.device), y.to(self.device))
            losses[t], accs[t] = self._eval(t, self._subsets[t])
        return accs, losses

    def full(self) -> list[float]:
        """Accuracy on the full test split of every task (one accuracy-matrix row)."""
        return [self._eval(t, self.stream.eval_data(t, None))[1] for t in range(len(self.stream.tasks))]


def run_federation(grid: Grid, cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Run the whole continual federation on ``grid``; write and return the summary.

    With ``cfg['resume']`` set, the run continues from the newest checkpoint in
    ``run_dir/checkpoints`` (arrays, strategy, tracker, RNG and client states of
    that round) at the next round; every random draw is seeded from (seed, client,
    round), so the result equals the uninterrupted run's.
    """
    t_start = time.perf_counter()
    quiet = bool(cfg.get("quiet", False))
    policy = CheckpointPolicy.from_config(cfg)
    seed = int(cfg["seed"])
    fed = cfg["federation"]
    stream = build_stream(cfg["stream"], fed["num_clients"], seed)
    stream.cache.set_budget(cfg["backend"].get("data_cache_mb", 256))  # cached eval subsets / test splits
    schedule: Schedule = build_schedule(fed, len(stream.tasks), fed["num_clients"], seed, cfg.get("schedule"))
    device = pick_device(str(cfg["device"]))
    torch.manual_seed(seed)
    model = build_model(cfg["model"], stream.in_shape, stream.num_classes, stream.num_heads).to(device)
    arrays = ArrayRecord({k: Array(v.detach().cpu().numpy()) for k, v in model.state_dict().items()})
    strategy = build_strategy(cfg, schedule, str(run_dir / CLIENT_DIR))
    if (cfg.get("privacy") or {}).get("secure_aggregation"):  # SecAgg+: strategies only ever get sums
        from fedcl.privacy.secagg import SecAggPlusGrid, max_client_examples

        grid = SecAggPlusGrid(grid, cfg["privacy"]["secagg"],  # type: ignore[assignment]
                              max_client_examples(stream, int(fed["num_clients"])))
    evaluator = CentralEvaluator(stream, model, cfg["eval"]["subset_size"], int(cfg["eval"]["batch_size"]))
    tracker = Tracker(len(stream.tasks), None)
    # eval.local_forgetting: clients' own-model accuracies, taken out of the replies before aggregation
    local = LocalForgetting(schedule) if cfg["eval"].get("local_forgetting", False) else None
    unlearning = UnlearningRunner(cfg, stream, schedule, strategy, model)  # deletion requests (unlearning=)

    first_round, elapsed_before = 1, 0.0
    if cfg.get("resume"):
        first_round, arrays, elapsed_before = _resume(run_dir, cfg, strategy, tracker)
        if local is not None:  # the clients' local evaluations so far
            ckpt = latest_checkpoint(run_dir)
            local.load_state_dict(load_checkpoint(ckpt).get("local", {}) if ckpt is not None else {})
        if not quiet:
            print(f"resumed {run_dir} after round {first_round - 1} of {schedule.total_rounds}", flush=True)
    else:
        _fresh_run_dir(run_dir)
        evaluator.load(arrays)
        tracker.set_initial_accuracy(evaluator.full())
    tracker.out_dir = run_dir
    unlearning.run_dir = run_dir
    unlearning.start(first_round)
    (run_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    loggers = RoundLoggers(cfg, run_dir)
    clock = RoundClock(schedule.total_rounds)
    task_end = {t: schedule.task_end_round(t) for t in range(len(stream.tasks))}
    try:
        for rnd in range(first_round, schedule.total_rounds + 1):
            t0 = time.perf_counter()
            up0, down0 = strategy.bytes_up, strategy.bytes_down
            # retried up to federation.round_retries times below federation.min_replies (RoundError after)
            messages, replies, attempts = send_train_round(strategy, grid, rnd, arrays, cfg)
            failures = sum(1 for r in replies if r.has_error()) + len(messages) - len(replies)
            state_bytes = state_bytes_row(replies)  # plain mean / max over clients, before aggregation
            if local is not None:
                local.collect(rnd, replies)
            unlearning.observe(rnd, arrays, replies)  # individual updates, for methods that keep them
            new_arrays, train_metrics = strategy.aggregate_train(rnd, replies)
            if new_arrays is not None:
                arrays = new_arrays
            ended = [task for task, end_round in task_end.items() if end_round == rnd]
            for task in ended:
                arrays = strategy.on_task_end(rnd, task, arrays, grid)
            arrays = unlearning.after_round(rnd, arrays, grid)  # serve the deletion requests due now
            evaluator.load(arrays)
            accs, losses = evaluator.per_round(schedule.seen_tasks(rnd))
            tm = dict(train_metrics or {})
            row = tracker.log_round(
                rnd,
                schedule.global_task(rnd),
                accs,
                losses,
                {
                    "num_clients": len(messages),
                    "failures": failures,
                    **_fault_row(strategy, attempts),
                    "train_loss": tm.get("train-loss"),
                    **state_bytes,
                    "bytes_up": strategy.bytes_up - up0,
                    "bytes_down": strategy.bytes_down - down0,
                    "seconds": time.perf_counter() - t0,
                    **getattr(strategy, "privacy_row", dict)(),  # privacy.dp: cumulative epsilon, delta
                    **getattr(grid, "secagg_row", dict)(),  # SecAgg+: protocol seconds, dropouts, clipping
                    **unlearning.round_metrics(arrays),  # forget / retain accuracy after a request
                },
            )
            if cfg["eval"].get("full_test_at_task_end", True):
                for task in ended:
                    tracker.log_task_end(task, rnd, evaluator.full())
            clock.tick(float(row["seconds"]))
            if not quiet:
                print(tracker.format_round(row) + clock.suffix(rnd), flush=True)
            loggers.log(row, _forgetting_so_far(tracker))
            if policy.due(rnd, bool(ended)):
                payload = {
                    "arrays": arrays.to_torch_state_dict(),
                    "strategy": strategy.state_dict(),
                    "tracker": tracker.state_dict(),
                    **({"local": local.state_dict()} if local is not None else {}),
                    "rng": rng_state(),
                    "elapsed_s": elapsed_before + time.perf_counter() - t_start,
                    "total_rounds": schedule.total_rounds,
                }
                save_checkpoint(run_dir, rnd, payload, keep=policy.keep)
    finally:
        loggers.close()
    summary = tracker.write_summary(
        {
            "wall_time_s": elapsed_before + time.perf_counter() - t_start,
            "bytes_up": strategy.bytes_up,
            "bytes_down": strategy.bytes_down,
            **state_bytes_summary(tracker.rows),
            "strategy_state": _scalars(strategy.state_dict()),
            "resumed_from_round": first_round - 1 if cfg.get("resume") else None,
            "privacy": {**getattr(strategy, "privacy_row", dict)(), "secure_aggregation": bool(
                (cfg.get("privacy") or {}).get("secure_aggregation"))},  # epsilon over the whole stream
            **(local.summary(tracker.summary().get("forgetting")) if local is not None else {}),
            **({"unlearning": unlearning.summary()} if unlearning.requests else {}),
            "config": cfg,
        }
    )
    torch.save({"arrays": arrays.to_torch_state_dict(), "strategy": strategy.state_dict()}, run_dir / "final.pt")
    if cfg["output"].get("plots", True):
        write_run_plots(tracker, run_dir)
    unlearning.write_outputs(run_dir, plots=bool(cfg["output"].get("plots", True)))
    write_stream_outputs(stream, schedule, local, run_dir, plots=bool(cfg["output"].get("plots", True)),
                         global_forgetting=summary.get("forgetting"))
    print(tracker.format_table(), flush=True)
    print(f"run folder: {run_dir}", flush=True)
    return summary


def _fresh_run_dir(run_dir: Path) -> None:
    """Remove a previous run's per-round outputs from ``run_dir``.

    Left in place, its client states would silently seed this run's clients and
    its ``metrics.jsonl`` would be appended to.
    """
    for name in (CLIENT_DIR, CKPT_DIR):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    (run_dir / "summary.json").unlink(missing_ok=True)


def _resume(run_dir: Path, cfg: dict[str, Any], strategy: Any, tracker: Tracker) -> tuple[int, ArrayRecord, float]:
    """Restore the newest checkpoint of ``run_dir``; return (first round to run, arrays, elapsed s)."""
    if cfg["federation"].get("state_store", "disk") != "disk":
        raise ConfigError("resume", cfg["resume"], "needs federation.state_store=disk (context.state dies with the "
                          "SuperNodes, so client states cannot be restored)")
    path = latest_checkpoint(run_dir)
    if path is None:
        raise ConfigError("resume", cfg["resume"], f"no checkpoint in {run_dir / CKPT_DIR}; start a new run instead")
    state = load_checkpoint(path)
    strategy.load_state_dict(state["strategy"])
    tracker.load_state_dict(state["tracker"])
    set_rng_state(state["rng"])
    restore_client_states(path, run_dir)
    # metrics.jsonl may hold rounds after the checkpoint: rewrite it to the checkpointed rows
    tmp = run_dir / ".metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in tracker.rows))
    os.replace(tmp, run_dir / "metrics.jsonl")
    (run_dir / "summary.json").unlink(missing_ok=True)
    arrays = ArrayRecord({k: Array(v.detach().cpu().numpy()) for k, v in state["arrays"].items()})
    return int(state["round"]) + 1, arrays, float(state.get("elapsed_s", 0.0))


def _fault_row(strategy: Any, attempts: int) -> dict[str, Any]:
    """Failed / rejected clients of the round (``strategies.round_faults``) for ``metrics.jsonl``."""
    faults = getattr(strategy, "round_faults", None)
    row: dict[str, Any] = faults.as_row() if faults is not None else {}
    row["round_attempts"] = attempts
    return row


def _forgetting_so_far(tracker: Tracker) -> float | None:
    """FOT-form forgetting of the accuracy-matrix rows recorded so far (None before task 1 ends)."""
    A = tracker.accuracy_matrix()
    return forgetting(A) if A.shape[0] > 1 else None


def _scalars(state: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of a strategy state (numbers, strings, dicts of numbers)."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        if isinstance(v, (int, float, str)):
            out[k] = v
        elif isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()):
            out[k] = dict(v)
    return out


@app.main()
def main(grid: Grid, context: Context) -> None:
    """ServerApp entry point."""
    logging.getLogger("flwr").propagate = False
    quiet_flower_logs()
    cfg = load_config(dict(context.run_config))
    run_dir = resolve_run_dir(cfg, dict(context.run_config))
    if hasattr(grid, "pull_interval"):  # Flower's simulation grid sleeps this long between polls for replies
        grid.pull_interval = float(cfg["backend"].get("pull_interval_s", 0.1))
    try:
        run_federation(grid, cfg, run_dir)
    except Exception:
        # the launcher only sees flwr's exit code: leave the real cause in the run folder
        (run_dir / "error.txt").write_text(traceback.format_exc())
        raise
