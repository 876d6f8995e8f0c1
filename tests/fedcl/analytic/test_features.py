"""The seeded expansion, the backbone features, the installed head and backbone loading."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from fedcl.analytic import (
    MASKED_LOGIT,
    RandomExpansion,
    client_statistics,
    features,
    install_head,
    load_backbone,
    solve_ridge,
    statistics,
)
from fedcl.analytic.privacy import clip_rows
from fedcl.checkpoint import rng_state
from fedcl.errors import ConfigError, DataError
from fedcl.models import ConvNet
from fedcl.trainer import evaluate
from tests.fedcl.analytic.helpers import GAMMA, expansion_for, frozen_backbone, synthetic_stream


def test_expansion_is_a_function_of_the_seed_alone() -> None:
    # Prepare / Execute: "two clients" build it independently, after unrelated draws
    a = RandomExpansion(48, 64, "relu", seed=7)
    torch.manual_seed(123)
    b = RandomExpansion(48, 64, "relu", seed=7)
    # Assert
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, RandomExpansion(48, 64, "relu", seed=8).weight)
    assert a.weight.dtype == torch.float64 and a.weight.shape == (48, 64)


def test_activations() -> None:
    h = torch.randn(10, 48)
    z = h.double() @ RandomExpansion(48, 64, "none", 0).weight
    assert torch.equal(RandomExpansion(48, 64, "relu", 0)(h), torch.relu(z))
    assert torch.equal(RandomExpansion(48, 64, "tanh", 0)(h), torch.tanh(z))
    assert torch.equal(RandomExpansion(48, 64, "none", 0)(h), z)


@pytest.mark.parametrize(("dim", "act", "key"), [(0, "relu", "expansion_dim"), (8, "gelu", "activation"),
                                                  (True, "relu", "expansion_dim")])
def test_bad_expansion_settings_name_the_key(dim: int, act: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"strategy.{key}"):
        RandomExpansion(48, dim, act, 0)


def test_features_ignore_batching_dropout_and_train_mode() -> None:
    # Prepare: a backbone with dropout, left in train mode
    stream = synthetic_stream(num_clients=1)
    model = frozen_backbone(stream, dropout=0.5)
    model.train()
    exp = expansion_for(model)
    x, _ = stream.client_data(0, 0)
    # Execute
    one = features(model, exp, x, batch_size=len(x))
    small = features(model, exp, x, batch_size=7)
    # Assert: eval-mode float64 features, independent of the batch a sample sits in
    assert one.dtype == torch.float64 and one.shape == (len(x), 96)
    assert torch.allclose(small, one, rtol=0, atol=1e-14)
    assert torch.equal(features(model, exp, x), one)
    assert model.training and all(p.dtype == torch.float32 for p in model.parameters())  # model untouched


def test_client_statistics_equal_statistics_of_the_features() -> None:
    stream = synthetic_stream(num_clients=1)
    model = frozen_backbone(stream)
    exp = expansion_for(model)
    x, y = stream.client_data(1, 0)
    got = client_statistics(model, exp, x, y, 6, batch_size=10)
    want = statistics(features(model, exp, x), y, 6)
    assert torch.allclose(got.gram, want.gram, rtol=1e-13) and torch.allclose(got.cross, want.cross, rtol=1e-13)
    assert torch.equal(got.class_counts, want.class_counts) and got.count == len(y)


def test_feature_clipping_for_dp_applies_per_sample() -> None:
    # Prepare: a bound below the typical feature norm, so most rows are clipped
    stream = synthetic_stream(num_clients=1)
    model = frozen_backbone(stream)
    exp = expansion_for(model)
    x, y = stream.client_data(0, 0)
    raw = features(model, exp, x)
    bound = float(raw.norm(dim=1).median())
    # Execute
    clipped = features(model, exp, x, batch_size=13, clip_bound=bound)
    stats = client_statistics(model, exp, x, y, 6, batch_size=13, clip_bound=bound)
    # Assert
    assert torch.allclose(clipped, clip_rows(raw, bound), rtol=0, atol=1e-14)
    assert float(clipped.norm(dim=1).max()) <= bound * (1 + 1e-12)
    assert float(stats.gram.trace()) <= len(y) * bound**2 * (1 + 1e-12)  # trace = sum of squared row norms


def test_installed_head_is_what_the_evaluator_scores() -> None:
    # Prepare
    stream = synthetic_stream(num_clients=1)
    model = frozen_backbone(stream)
    exp = expansion_for(model)
    x, y = stream.client_data(0, 0)
    w = solve_ridge(statistics(features(model, exp, x), y, 6), GAMMA)
    xt, yt = stream.eval_data(0)
    # Execute
    m = copy.deepcopy(model)
    install_head(m, expansion_for(m), w, active_classes=stream.tasks[0].classes)
    _, acc = evaluate(m, xt, yt)
    # Assert: the same accuracy as the solved W applied by hand to the backbone's features
    with torch.no_grad():
        logits = exp(model.body(xt)) @ w
    mask = torch.full((6,), MASKED_LOGIT, dtype=torch.float64)
    mask[stream.tasks[0].classes] = 0
    assert acc == pytest.approx(float(((logits + mask).argmax(1) == yt).double().mean()))
    assert acc > 0.9
    assert not any(p.requires_grad for p in m.head.parameters())


def test_mask_keeps_unseen_classes_out_of_the_prediction() -> None:
    # Prepare: a head whose W favours class 5, which has no data
    stream = synthetic_stream(num_clients=1)
    model = frozen_backbone(stream)
    w = torch.zeros(96, 6, dtype=torch.float64)
    w[:, 5] = 1.0
    w[:, 0] = 0.5
    xt, _ = stream.eval_data(0)
    # Execute
    m = copy.deepcopy(model)
    install_head(m, expansion_for(m), w, active_classes=[0, 1])
    with torch.no_grad():
        logits = m(xt)
    # Assert
    assert (logits.argmax(1) == 0).all()
    assert torch.isfinite(logits).all() and logits.dtype == torch.float64


def test_multi_head_weight_is_picked_by_task_id() -> None:
    stream = synthetic_stream("task_incremental", num_clients=1)
    model = frozen_backbone(stream)
    w = torch.randn(3, 96, 6, dtype=torch.float64)
    m = copy.deepcopy(model)
    install_head(m, expansion_for(m), w)
    xt, _ = stream.eval_data(2)
    with torch.no_grad():
        assert torch.allclose(m(xt, 2), expansion_for(model)(model.body(xt)) @ w[2])
        with pytest.raises(ValueError, match="task id"):
            m(xt)


def test_conv_backbone_works_too() -> None:
    torch.manual_seed(0)
    model = ConvNet((1, 8, 8), 6, channels=[4], hidden=16)
    exp = RandomExpansion(16, 32, "relu", 0)
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 6, (20,))
    w = solve_ridge(client_statistics(model, exp, x, y, 6), GAMMA)
    install_head(model, exp, w)
    assert model(x).shape == (20, 6)


def test_load_backbone_from_a_run_file_or_a_state_dict(tmp_path: Path) -> None:
    # Prepare
    stream = synthetic_stream(num_clients=1)
    trained, fresh = frozen_backbone(stream, seed=1), frozen_backbone(stream, seed=2)
    torch.save({"arrays": trained.state_dict(), "rng": rng_state(), "round": 3}, tmp_path / "final.pt")
    torch.save(trained.state_dict(), tmp_path / "plain.pt")
    for name in ("final.pt", "plain.pt"):
        m = copy.deepcopy(fresh)
        # Execute
        load_backbone(m, tmp_path / name)
        # Assert: the body is the trained one, the head untouched
        assert all(torch.equal(a, b) for a, b in zip(m.body.state_dict().values(),
                                                     trained.body.state_dict().values(), strict=True))
        assert torch.equal(m.state_dict()["head.heads.0.weight"], fresh.state_dict()["head.heads.0.weight"])


def test_load_backbone_errors(tmp_path: Path) -> None:
    stream = synthetic_stream(num_clients=1)
    model = frozen_backbone(stream)
    with pytest.raises(DataError, match="no such file"):
        load_backbone(model, tmp_path / "missing.pt")
    other = ConvNet((1, 8, 8), 6, channels=[4], hidden=16)
    torch.save(other.state_dict(), tmp_path / "conv.pt")
    with pytest.raises(DataError, match="same `model` config"):
        load_backbone(model, tmp_path / "conv.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="not a readable torch file"):
        load_backbone(model, tmp_path / "junk.pt")
