"""Si-Blurry stream option: disjoint classes stay home, blurry shares follow the per-client proportions."""

from __future__ import annotations

import numpy as np
import pytest

from fedcl.config import compose
from fedcl.data import build_stream
from fedcl.errors import ConfigError
from tests.conftest import synthetic_overrides


def _stream(blurry: str, seed: int = 0, tasks: int = 3, classes: int = 8) -> object:
    cfg = compose(synthetic_overrides(f"stream.num_tasks={tasks}", f"stream.synthetic.num_classes={classes}",
                                      f"stream.blurry={blurry}", f"seed={seed}"))
    return build_stream(cfg.stream, cfg.federation.num_clients, seed)


def test_blurry_proportions_as_configured() -> None:
    # Prepare / Execute
    st = _stream("{disjoint_ratio: 0.5, blurry_ratio: 0.3, per_client: true, vary_classes: true}")
    # Assert
    info = st.blurry  # type: ignore[attr-defined]
    home = {c: t for t, task in enumerate(st.tasks) for c in task.classes}  # type: ignore[attr-defined]
    assert len(info["blurry_classes"]) == 4 and all(0 <= m <= 0.6 for m in info["client_proportions"])
    for c, m in enumerate(info["client_proportions"]):
        labels = [st.client_labels(t, c) for t in range(3)]  # type: ignore[attr-defined]
        away = sum(int(np.isin(lab, [k for k in info["blurry_classes"] if home[k] != t]).sum())
                   for t, lab in enumerate(labels))
        total = sum(int(np.isin(lab, info["blurry_classes"]).sum()) for lab in labels)
        assert away / total == pytest.approx(m, abs=0.02)  # rounding per class only
        for t, lab in enumerate(labels):  # disjoint classes never leave their home task
            disjoint_here = [k for k in np.unique(lab) if k not in info["blurry_classes"]]
            assert all(home[int(k)] == t for k in disjoint_here)


def test_blurry_varies_classes_per_task_and_is_seeded() -> None:
    # Prepare / Execute
    a = _stream("{blurry_ratio: 0.2, vary_classes: true}", seed=4, tasks=4, classes=10)
    b = _stream("{blurry_ratio: 0.2, vary_classes: true}", seed=4, tasks=4, classes=10)
    # Assert: every class in exactly one home task, sizes random but the same for the same seed
    sizes = [len(t.classes) for t in a.tasks]  # type: ignore[attr-defined]
    assert sum(sizes) == 10 and min(sizes) >= 1
    assert sizes == [len(t.classes) for t in b.tasks]  # type: ignore[attr-defined]
    assert np.array_equal(a.client_labels(1, 0), b.client_labels(1, 0))  # type: ignore[attr-defined]


def test_blurry_needs_class_incremental() -> None:
    with pytest.raises(ConfigError, match="stream.blurry"):
        cfg = compose(synthetic_overrides("stream.scenario=domain_permuted", "stream.blurry={blurry_ratio: 0.1}"))
        build_stream(cfg.stream, 3, 0)
