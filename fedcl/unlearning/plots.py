"""The unlearning plot of a run: forget / retain / test accuracy and attack AUC, before, after, oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

BARS = (("forget_acc", "forget acc"), ("retain_acc", "retain acc"), ("test_acc", "test acc"),
        ("mia_auc_loss", "MIA AUC"))


def plot_unlearning(jobs: list[dict[str, Any]], path: str | Path, method: str) -> Path:
    """One panel per served job: grouped bars before / after / oracle."""
    fig, axes = plt.subplots(1, len(jobs), figsize=(5.5 * len(jobs), 3.8), squeeze=False)
    for ax, job in zip(axes[0], jobs, strict=True):
        candidates: list[tuple[str, dict[str, Any] | None]] = [
            ("before", job.get("before")), ("after", job.get("after")),
            ("oracle", (job.get("oracle") or {}).get("report"))]
        series = [(n, s) for n, s in candidates if s]
        width = 0.8 / max(len(series), 1)
        x = np.arange(len(BARS))
        for i, (name, rep) in enumerate(series):
            vals = [np.nan if rep.get(k) is None else 100 * float(rep[k]) for k, _ in BARS]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width=width, label=name)
        ax.set_xticks(x, [label for _, label in BARS])
        ax.set_ylim(0, 105)
        ax.set_ylabel("percent")
        reqs = ", ".join(f"{r['kind']} {r['target']}" for r in job["requests"])
        ax.set_title(f"{method}: forget {reqs} at round {job['round']}", fontsize=9)
        ax.axhline(50, color="grey", linestyle=":", linewidth=0.8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
