"""Outputs of the stream and schedule side of a run: who trains what, on which labels, and who forgot.

``schedule.json`` (the clients x rounds plan, -1 = idle, and each task's end round)
is always written; with ``output.plots`` also:

* ``label_distribution.png``: per task, the label counts of every client's share
  (a stacked bar per client, as flwr-datasets' ``plot_label_distributions`` draws
  them; its partitioners work on Hugging Face datasets, not on a stream's tasks);
* ``schedule_timeline.png``: which client is on which task in each round;
* ``local_forgetting.png``: the distribution of per-client local forgetting next
  to the global model's forgetting (``eval.local_forgetting: true`` only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from fedcl.data.schedules.base import plan_matrix  # noqa: E402

if TYPE_CHECKING:
    from fedcl.data import Schedule, Stream


def label_counts(stream: Stream) -> np.ndarray:
    """tasks x clients x classes label counts of every client's train share."""
    out = np.zeros((len(stream.tasks), stream.num_clients, stream.num_classes), dtype=np.int64)
    for t in range(len(stream.tasks)):
        for c in range(stream.num_clients):
            out[t, c] = np.bincount(stream.client_labels(t, c), minlength=stream.num_classes)
    return out


def plot_label_distribution(counts: np.ndarray, path: str | Path) -> Path:
    """One panel per task: a bar per client stacked by class."""
    tasks, clients, classes = counts.shape
    cols = min(tasks, 5)
    rows = -(-tasks // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 + 0.35 * clients * cols + 1.5 * cols, 2.8 * rows),
                             squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab20" if classes > 10 else "tab10")
    x = np.arange(clients)
    for t in range(rows * cols):
        ax = axes[t // cols][t % cols]
        if t >= tasks:
            ax.axis("off")
            continue
        bottom = np.zeros(clients)
        for k in range(classes):
            if counts[t, :, k].any():
                ax.bar(x, counts[t, :, k], bottom=bottom, color=cmap(k % cmap.N), label=str(k), width=0.8)
                bottom += counts[t, :, k]
        ax.set_title(f"task {t}", fontsize=9)
        ax.set_xlabel("client", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("samples")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(k % cmap.N)) for k in range(classes)]
    fig.legend(handles, [str(k) for k in range(classes)], title="class", loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.suptitle("label distribution per client per task")
    fig.tight_layout()
    return _save(fig, path)


def plot_schedule_timeline(plan: np.ndarray, end_rounds: dict[int, int], path: str | Path) -> Path:
    """clients x rounds grid coloured by task (white = idle); dotted lines at each task's end round."""
    clients, rounds = plan.shape
    num_tasks = int(plan.max()) + 1 if plan.size else 1
    base = plt.get_cmap("tab20" if num_tasks > 10 else "tab10")
    cmap = ListedColormap(np.asarray([(1.0, 1.0, 1.0, 1.0), *[base(t % base.N) for t in range(num_tasks)]]))
    fig, ax = plt.subplots(figsize=(2.0 + min(0.25 * rounds, 14), 1.0 + min(0.3 * clients, 10)))
    ax.imshow(plan + 1, cmap=cmap, vmin=0, vmax=num_tasks, aspect="auto", interpolation="nearest",
              extent=(0.5, rounds + 0.5, clients - 0.5, -0.5))
    if rounds <= 40 and clients <= 20:
        for c in range(clients):
            for r in range(rounds):
                if plan[c, r] >= 0:
                    ax.text(r + 1, c, str(plan[c, r]), ha="center", va="center", fontsize=7)
    for t, end in end_rounds.items():
        ax.axvline(end + 0.5, color=base(t % base.N), linestyle=":", linewidth=1.2)
    ax.set_xlabel("server round")
    ax.set_ylabel("client")
    ax.set_title("schedule: task of each client per round (white = idle; dotted = task end)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=base(t % base.N)) for t in range(num_tasks)]
    ax.legend(handles, [f"task {t}" for t in range(num_tasks)], loc="center left", bbox_to_anchor=(1.01, 0.5),
              fontsize=8)
    return _save(fig, path)


def plot_forgetting_distribution(per_client: dict[int, float], global_forgetting: float | None,
                                 path: str | Path) -> Path:
    """Per-client local forgetting (points, one dot per client, box over clients) and the global value."""
    vals = 100 * np.asarray(list(per_client.values()), dtype=float)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if vals.size:
        ax.boxplot(vals, orientation="horizontal", widths=0.5)
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, size=vals.size)  # fixed: same plot every time
        ax.scatter(vals, 1 + jitter, s=14, color="tab:blue", zorder=3, label="clients (local)")
    if global_forgetting is not None:
        ax.axvline(100 * global_forgetting, color="tab:red", linestyle="--", label="global model")
    ax.set_yticks([])
    ax.set_xlabel("forgetting (points)")
    ax.set_title("local forgetting per client vs global forgetting")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def write_stream_outputs(stream: Stream, schedule: Schedule, run_dir: str | Path, *, plots: bool = True) -> list[Path]:
    """``schedule.json`` and (with ``plots``) the stream plots of a run; return the files written."""
    out = Path(run_dir)
    plan = plan_matrix(schedule)
    ends = {t: schedule.task_end_round(t) for t in range(schedule.num_tasks)}
    info = {"total_rounds": int(schedule.total_rounds), "plan": plan.tolist(),
            "task_end_rounds": {str(t): r for t, r in ends.items()},
            "end_of_task": "the round in which the last client trains the task"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "schedule.json").write_text(json.dumps(info))
    paths = [out / "schedule.json"]
    if not plots:
        return paths
    paths.append(plot_schedule_timeline(plan, ends, out / "schedule_timeline.png"))
    paths.append(plot_label_distribution(label_counts(stream), out / "label_distribution.png"))
    return paths


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
