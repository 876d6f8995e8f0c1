"""Deletion requests and the unlearning config: every bad value names its key."""

from __future__ import annotations

import pytest

from fedcl.config import compose
from fedcl.errors import ConfigError
from fedcl.unlearning import Request, build_unlearner, parse_requests
from tests.conftest import synthetic_overrides


def test_requests_are_parsed_and_sorted_by_round() -> None:
    # Prepare
    raw = [{"round": 4, "kind": "client", "target": 1}, {"round": 2, "kind": "class", "target": 3}]
    # Execute
    reqs = parse_requests(raw, total_rounds=4, num_clients=3, num_classes=4)
    # Assert
    assert reqs == [Request(2, "class", 3), Request(4, "client", 1)]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ([{"round": 9, "kind": "class", "target": 0}], "unlearning.requests[0].round"),
        ([{"round": -1, "kind": "class", "target": 0}], "unlearning.requests[0].round"),
        ([{"round": 1, "kind": "sample", "target": 0}], "unlearning.requests[0].kind"),
        ([{"round": 1, "kind": "client", "target": 3}], "unlearning.requests[0].target"),
        ([{"round": 1, "kind": "class", "target": 4}], "unlearning.requests[0].target"),
        ([{"round": 1, "kind": "class"}], "unlearning.requests[0].target"),
        ([{"round": 1, "kind": "class", "target": 0, "when": 2}], "unlearning.requests[0]"),
        ("client 1", "unlearning.requests"),
        ([{"round": 1, "kind": "class", "target": 0}, {"round": 2, "kind": "class", "target": 0}],
         "unlearning.requests"),
        ([{"round": 1, "kind": "client", "target": c} for c in range(3)], "unlearning.requests"),
    ],
)
def test_bad_requests_name_the_key(raw: object, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_requests(raw, total_rounds=4, num_clients=3, num_classes=4)
    assert err.value.key == key


def test_compose_validates_requests_against_the_run() -> None:
    # the synthetic stream has 4 classes and 2 x 2 rounds
    with pytest.raises(ConfigError, match=r"requests\[0\]\.target"):
        compose(synthetic_overrides("unlearning=ssd", "unlearning.requests=[{round:2,kind:class,target:7}]"))
    with pytest.raises(ConfigError, match="at least one"):
        compose(synthetic_overrides("unlearning=ga"))


def test_fed_eraser_declares_individual_updates_and_is_rejected_under_secure_aggregation() -> None:
    # Prepare
    request = "unlearning.requests=[{round:2,kind:client,target:1}]"
    cfg = compose(synthetic_overrides("unlearning=fed_eraser", request))
    # Execute / Assert
    assert type(build_unlearner(cfg.unlearning)).needs_individual_updates
    with pytest.raises(ConfigError, match="individual updates") as err:
        compose(synthetic_overrides("unlearning=fed_eraser", request, "privacy=secagg"))
    assert err.value.key == "unlearning.name"
    # sums only: fine under secure aggregation (client-level GA has one holder: refused, test_secagg_config.py)
    for ok in ("ssd", "retrain"):
        compose(synthetic_overrides(f"unlearning={ok}", request, "privacy=secagg"))


def test_bad_method_params_name_the_key() -> None:
    request = "unlearning.requests=[{round:2,kind:class,target:1}]"
    with pytest.raises(ConfigError, match="unlearning.alpha"):
        compose(synthetic_overrides("unlearning=ssd", "unlearning.alpha=0", request))
    with pytest.raises(ConfigError, match="unlearning.nope"):
        compose(synthetic_overrides("unlearning=ga", "+unlearning.nope=1", request))
    with pytest.raises(ConfigError, match="unlearning.name"):
        compose(synthetic_overrides("unlearning.name=sisa"))


def test_sample_requests_take_a_count_and_may_repeat_at_other_rounds() -> None:
    # Prepare: sample-level requests (random / worst) name how many samples, not a client or class
    raw = [{"round": 3, "kind": "worst", "target": 50}, {"round": 2, "kind": "random", "target": 50},
           {"round": 4, "kind": "random", "target": 50}]
    # Execute
    reqs = parse_requests(raw, total_rounds=4, num_clients=3, num_classes=4)
    # Assert: sorted, targets beyond the class / client bounds are fine, the same kind may come twice
    assert reqs == [Request(2, "random", 50), Request(3, "worst", 50), Request(4, "random", 50)]
    assert all(r.is_samples for r in reqs)


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ([{"round": 2, "kind": "random", "target": 0}], "unlearning.requests[0].target", "number of samples"),
        ([{"round": 0, "kind": "worst", "target": 5}], "unlearning.requests[0].round", "round >= 1"),
        ([{"round": 2, "kind": "worst", "target": 5}, {"round": 2, "kind": "worst", "target": 5}],
         "unlearning.requests", "twice"),
    ],
)
def test_bad_sample_requests_name_the_key(raw: object, key: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as err:
        parse_requests(raw, total_rounds=4, num_clients=3, num_classes=4)
    assert err.value.key == key


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("unlearning.data_access=all", "unlearning.data_access", "history .* or buffer"),
        ("unlearning.holdout=1.0", "unlearning.holdout", r"fraction in \[0, 1\)"),
        ("unlearning.forget_sets=3", "unlearning.forget_sets", "forget-sets.json"),
        ("unlearning.calibration_ratio=1.5", "unlearning.calibration_ratio", "local_epochs"),
        ("unlearning.step=newton", "unlearning.step", "adam"),
    ],
)
def test_bad_access_holdout_and_method_keys_name_the_key(override: str, key: str, words: str) -> None:
    request = "unlearning.requests=[{round:2,kind:class,target:1}]"
    method = {"calibration": "fed_eraser", "step": "iau"}
    name = next((m for k, m in method.items() if k in override), "ga")
    with pytest.raises(ConfigError, match=words) as err:
        compose(synthetic_overrides(f"unlearning={name}", request, override))
    assert err.value.key == key


def test_the_retrain_point_must_name_a_request_round(tmp_path: object) -> None:
    from simulations.run import run

    cfg = compose(synthetic_overrides("unlearning=retrain", "unlearning.point=3", "quiet=true", "backend=inprocess",
                                      "unlearning.requests=[{round:2,kind:class,target:1}]"))
    with pytest.raises(ConfigError, match="at most 1") as err:
        run(cfg, f"{tmp_path}/run")
    assert err.value.key == "unlearning.point"
