"""The papers' networks: layer for layer as the authors' code, parameter counts, and FOT's projection on them."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fedcl.config import validate_section
from fedcl.config.schema import Model
from fedcl.errors import ConfigError
from fedcl.fot.client import gpse_statistics
from fedcl.models import MODELS, build_model
from fedcl.models.count import SETUPS, authors_count, build, count, main
from fedcl.subspace import grow_basis, layer_inputs, project_update, projectable_layers, unfold_input, weight_view
from tests.fedcl.models import authors_models as am

# (fedcl set-up index in SETUPS, the authors' network, the authors' head prefix)
PAIRS: list[tuple[int, Callable[[], nn.Module], str]] = [
    (0, lambda: am.FotAlexNet(10, 10), "last"),
    (1, lambda: am.FotAlexNet(10, 10, bn=True), "last"),
    (2, am.fot_resnet18_5datasets, "linear"),
    (3, am.gpm_resnet18_5datasets, "linear"),
    (4, am.fot_resnet18_miniimagenet, "linear"),
]


def _ours(i: int) -> nn.Module:
    return build(SETUPS[i], SETUPS[i].classes_per_task)


@pytest.mark.parametrize(("i", "authors", "head"), PAIRS)
def test_same_parameters_as_the_authors(i: int, authors: Callable[[], nn.Module], head: str) -> None:
    # Prepare
    ours, theirs = _ours(i), authors()
    # Execute: every parameter and buffer with its name and shape; heads renamed head.heads.<t>
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    want = {k.replace(f"{head}.", "head.heads.", 1) if k.startswith(f"{head}.") else k: tuple(v.shape)
            for k, v in theirs.state_dict().items()}
    # Assert: identical names and shapes (so identical counts), pinned by the count command too
    assert mine == want
    assert authors_count(SETUPS[i]) == sum(p.numel() for p in theirs.parameters())


@pytest.mark.parametrize(("i", "authors", "head"), PAIRS)
def test_same_function_as_the_authors(i: int, authors: Callable[[], nn.Module], head: str) -> None:
    # Prepare: the authors' network with random weights, copied into ours
    torch.manual_seed(0)
    theirs = authors().eval()
    ours = _ours(i).eval()
    ours.load_state_dict({k.replace(f"{head}.", "head.heads.", 1) if k.startswith(f"{head}.") else k: v
                          for k, v in theirs.state_dict().items()})
    x = torch.randn(4, *SETUPS[i].in_shape)
    # Execute
    with torch.no_grad():
        want = theirs(x)
        feats = ours.features(x)  # one body pass; forward() itself is checked on the last task
        got = [ours.head(feats, t) for t in range(SETUPS[i].tasks - 1)] + [ours(x, task_id=SETUPS[i].tasks - 1)]
    # Assert: the same outputs for every task head (layer order, pooling, residuals, batch norms)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    # Execute / Assert: in training mode too, dropout masks drawn in the same order on the same shapes
    last = SETUPS[i].tasks - 1
    torch.manual_seed(7)
    want_train = theirs.train()(x)[last]
    torch.manual_seed(7)
    torch.testing.assert_close(ours.train()(x, task_id=last), want_train, rtol=1e-5, atol=1e-5)


def test_parameter_counts_pinned() -> None:
    # FOT's AlexNet by hand: 3*64*16 + 64*128*9 + 128*256*4 + 1024*2048 + 2048*2048 + 10 heads * 2048*10
    assert authors_count(SETUPS[0]) == 3072 + 73728 + 131072 + 2097152 + 4194304 + 204800 == 6_704_128
    assert [authors_count(s) for s in SETUPS] == [6_704_128, 6_713_216, 1_122_140, 1_125_140, 3_025_440]


def test_count_command_prints_the_counts(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    assert main(["alexnet", "resnet18_reduced"]) == 0
    out = capsys.readouterr().out
    # Assert
    assert "6,704,128" in out and "1,122,140" in out and "3,025,440" in out and out.count("\n") == 6
    with pytest.raises(SystemExit):
        main(["mlp"])


@pytest.mark.parametrize(("i", "names"), [(0, am.FOT_ALEXNET_LAYERS), (2, am.FOT_RESNET_LAYERS),
                                          (4, am.FOT_RESNET_LAYERS)])
def test_fot_projects_the_authors_layers(i: int, names: list[str]) -> None:
    # Execute: the layers fedcl's FOT projects on the multi-head model
    layers = projectable_layers(_ours(i))
    # Assert: exactly the ones FOT's aggregator projects; heads and batch norms excluded
    assert sorted(layers) == sorted(names)


@pytest.mark.parametrize("i", [2, 4])
def test_im2col_matches_every_conv(i: int) -> None:
    # Prepare: stride-1 and stride-2 3 x 3 convs, 1 x 1 stride-2 shortcuts, the stride-2 stem
    torch.manual_seed(1)
    model = _ours(i).eval()
    x = torch.randn(2, *SETUPS[i].in_shape)
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, a, o, n=n: inputs.__setitem__(n, (a[0], o)))
             for n, m in projectable_layers(model).items()]
    # Execute
    with torch.no_grad():
        model(x, task_id=0)
    for h in hooks:
        h.remove()
    # Assert: W_view @ patches reproduces each conv's output, so the bases live in the right space
    for name, layer in projectable_layers(model).items():
        if isinstance(layer, nn.Conv2d):
            a, out = inputs[name]
            cols = F.unfold(a, layer.kernel_size, padding=layer.padding, stride=layer.stride)
            recon = (weight_view(layer.weight) @ cols).reshape(out.shape)
            torch.testing.assert_close(recon, out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("i", [0, 2, 4])
def test_gpse_and_projection_run_on_the_paper_networks(i: int) -> None:
    # Prepare: a small model input batch; GPSE as a client runs it at a task's end
    torch.manual_seed(2)
    model = _ours(i)
    x = torch.randn(6, *SETUPS[i].in_shape)
    # Execute: sketches of every projected layer, a basis grown from them, an update projected on it
    sketches, stats = gpse_statistics(model, x, {}, sketch_factor=1, max_samples=6,
                                      generator=torch.Generator().manual_seed(0), max_columns=200, task_id=1)
    layers = projectable_layers(model)
    bases = {}
    for name, y in sketches.items():
        d = weight_view(layers[name].weight).shape[1]
        assert y.shape == (d, d)
        ratio = stats[f"{name}/ratio-weighted"] / stats["num-examples"]
        # 40 of the d sketch columns: still a sketch of the same residual, and a cheap SVD for a unit test
        bases[name] = grow_basis(torch.zeros(d, 0), torch.from_numpy(y[:, :40]), ratio, 0.9)
    delta = {f"{n}.weight": torch.randn_like(m.weight) for n, m in layers.items()}
    projected = project_update(delta, bases)
    # Assert: every projected layer got a basis and its update is orthogonal to it
    assert set(sketches) == set(layers)
    for name, U in bases.items():
        assert U.shape[1] >= 1
        residual = weight_view(projected[f"{name}.weight"]) @ U
        assert float(residual.abs().max()) < 1e-3 * float(weight_view(delta[f"{name}.weight"]).abs().max())


def test_layer_inputs_dimensions_match_the_weights() -> None:
    # Prepare
    model = _ours(4)
    x = torch.randn(2, 3, 84, 84)
    # Execute
    inputs = layer_inputs(model, projectable_layers(model), x, max_columns=100, task_id=3)
    # Assert: d = in * kh * kw for each conv; the stride-2 stem sees 42 x 42 patch positions per image
    for name, layer in projectable_layers(model).items():
        assert inputs[name].shape[0] == weight_view(layer.weight).shape[1]
    assert unfold_input(model.conv1, x).shape == (27, 2 * 42 * 42)


def test_batch_norm_has_no_running_buffers_and_is_not_projected() -> None:
    # Prepare
    model = _ours(4)
    # Assert: nothing but parameters in the state dict (no client-specific running statistics to average)
    assert {k for k, _ in model.named_buffers()} == set()
    bn = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bn) == 1 + 16 + 3 and not set(bn) & set(projectable_layers(model))


@pytest.mark.parametrize("name", ["alexnet", "resnet18_reduced"])
def test_small_inputs_and_errors(name: str) -> None:
    # Prepare: the model YAML's defaults
    from fedcl.config import compose

    cfg = compose([f"model={name}"]).model
    # Execute / Assert: Fashion-MNIST's grey 28 x 28 images work; 8 x 8 ones are refused naming the key
    model = build_model(cfg, (1, 28, 28), 10, 3)
    assert model(torch.randn(2, 1, 28, 28), task_id=2).shape == (2, 10)
    with pytest.raises(ConfigError, match="model.name"):
        build_model(cfg, (3, 8, 8), 10)
    assert np.isfinite(sum(count(model)))
    assert MODELS.get(name) is type(model)


@pytest.mark.parametrize(
    ("model", "key", "match"),
    [
        ({"name": "alexnet", "batch_norm": False, "hidden": 0, "dropout_conv": 0.2, "dropout_fc": 0.5,
          "head_bias": False}, "model.hidden", ">= 1"),
        ({"name": "alexnet", "batch_norm": False, "hidden": 64, "dropout_conv": 1.0, "dropout_fc": 0.5,
          "head_bias": False}, "model.dropout_conv", "[0, 1)"),
        ({"name": "alexnet", "batch_norm": "no", "hidden": 64, "dropout_conv": 0.2, "dropout_fc": 0.5,
          "head_bias": False}, "model.batch_norm", "true or false"),
        ({"name": "resnet18_reduced", "nf": 0, "stem_stride": 1, "batch_norm": False, "head_bias": False},
         "model.nf", ">= 1"),
        ({"name": "resnet18_reduced", "nf": 20, "stem_stride": 5, "batch_norm": False, "head_bias": False},
         "model.stem_stride", "[1, 4]"),
        ({"name": "resnet18_reduced", "nf": 20, "stem_stride": 1, "batch_norm": False}, "model.head_bias",
         "required"),
    ],
)
def test_model_keys_are_checked(model: dict, key: str, match: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(match)) as info:
        validate_section(Model, model, "model")
    assert info.value.key == key


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["model=alexnet", "stream=synthetic"], "at least 19 x 19"),  # synthetic images are 1 x 8 x 8
        (["model=resnet18_reduced", "stream=synthetic", "stream.synthetic.image_shape=[1,4,4]"], "larger inputs"),
        (["model=resnet18_reduced", "model.stem_stride=4", "stream=split_cifar10"], "larger inputs"),
    ],
)
def test_model_that_does_not_fit_the_stream_is_refused_before_any_run(overrides: list[str], match: str) -> None:
    from fedcl.config import compose

    with pytest.raises(ConfigError, match=match) as info:
        compose(overrides)
    assert info.value.key == "model.name"


def test_paper_networks_fit_their_streams() -> None:
    from fedcl.config import compose

    compose(["model=resnet18_reduced", "model.stem_stride=2", "stream=mini_imagenet"])
    compose(["model=alexnet", "stream=tiny_imagenet"])


@pytest.mark.parametrize(("name", "params", "in_shape"), [
    ("alexnet", {"hidden": 64}, (3, 32, 32)),
    ("resnet18_reduced", {"nf": 4, "stem_stride": 2}, (3, 84, 84)),
])
def test_fedproject_keeps_old_tasks_features_on_the_real_input_shape(name: str, params: dict,
                                                                     in_shape: tuple[int, int, int]) -> None:
    # Prepare: an old task of flat-coloured images, whose im2col patches span a few directions only, so the
    # bases GPSE grows from them (eps near 1) are far from full and a projected update still moves the model
    from fedcl.fot.server import FOTState

    torch.manual_seed(3)
    model = MODELS.get(name)(in_shape, 5, num_heads=2, **params).eval()
    colours = torch.rand(6, in_shape[0], 1, 1)
    x_old = colours.expand(6, *in_shape).contiguous()
    x_new = torch.randn(6, *in_shape)
    sketches, stats = gpse_statistics(model, x_old, {}, sketch_factor=1, max_samples=6,
                                      generator=torch.Generator().manual_seed(0), max_columns=50_000, task_id=0)
    state = FOTState(eps=0.999999)
    n = stats.pop("num-examples")
    state.update_bases({k: v for k, v in sketches.items()},
                       {k[: -len("/ratio-weighted")]: v for k, v in stats.items()}, n)
    layers = projectable_layers(model)
    dims = {k: int(U.shape[1]) for k, U in state.bases.items()}
    full = {k: weight_view(m.weight).shape[1] for k, m in layers.items()}
    assert set(dims) == set(full) and all(dims[k] >= 1 for k in full)
    assert dims["conv1"] < full["conv1"] and sum(dims.values()) < sum(full.values()), (dims, full)
    # Execute: a random aggregate W_bar, projected by FedProject
    old = {k: v.clone() for k, v in model.state_dict().items()}
    averaged = {k: v + 0.05 * torch.randn_like(v) for k, v in old.items()}
    new = state.project(old, averaged)
    with torch.no_grad():
        before_old, before_new = model.features(x_old), model.features(x_new)
        model.load_state_dict(new)
        after_old, after_new = model.features(x_old), model.features(x_new)
    # Assert: the old task's features (every conv and linear layer, unfolded with its own stride and padding)
    # stay put up to the discarded energy; other inputs' features move
    moved_old = float((after_old - before_old).norm() / before_old.norm())
    moved_new = float((after_new - before_new).norm() / before_new.norm())
    assert moved_old < 1e-2 and moved_new > 20 * moved_old, (moved_old, moved_new)
