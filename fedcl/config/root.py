"""The root of the typed config, :class:`Config`, and the rules that tie its sections together.

Each single value is checked by its field (:mod:`fedcl.config.schema`); component groups
whose options are classes (local methods, unlearning methods, schedules) are checked
against the class's own signature (:mod:`fedcl.config.components`); what is left here
are combinations: a bound that depends on another key, a strategy that needs something
of the model, a privacy mode that rules out a method. Every failure is a
:class:`~fedcl.errors.ConfigError` naming the key, the value and what is allowed. Code
reads typed fields (``cfg.federation.num_clients``) and never supplies a default of its own.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from fedcl.config.components import validate_methods, validate_schedule_options, validate_unlearning_options
from fedcl.config.schema import (
    Backend,
    Checkpoint,
    Eval,
    Faults,
    Federation,
    Logging,
    Model,
    Output,
    Privacy,
    Strategy,
    Stream,
    Train,
)
from fedcl.config.types import Flag, Section
from fedcl.errors import ConfigError


class Config(Section):
    """A whole resolved experiment config (``simulations/conf/config.yaml`` and its groups)."""

    seed: int
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="'auto', 'cpu', 'cuda' or 'cuda:N'")]
    quiet: Flag
    federation: Federation
    train: Train
    eval: Eval
    output: Output
    resume: Annotated[str | None, Field(description="null or the folder of a killed run")]
    checkpoint: Checkpoint
    logging: Logging
    stream: Stream
    model: Model
    method: dict[str, dict[str, Any]]
    strategy: Strategy
    privacy: Privacy
    unlearning: dict[str, Any]
    backend: Backend
    faults: Faults
    schedule: dict[str, Any]
    experiment: str | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> Any:
        return validate_methods(value)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return validate_schedule_options(value)

    @field_validator("unlearning", mode="before")
    @classmethod
    def _unlearning(cls, value: Any) -> Any:
        return validate_unlearning_options(value)

    @model_validator(mode="after")
    def _combinations(self) -> Config:
        check_combinations(self)
        return self

    # ---- conveniences read everywhere -------------------------------------------------------
    @property
    def method_names(self) -> list[str]:
        """The local methods of every client, in hook order (``method=[er,ewc]``)."""
        return list(self.method)

    @property
    def unlearning_name(self) -> str:
        return str(self.unlearning["name"])

    @property
    def schedule_name(self) -> str:
        return str(self.schedule["name"])

    @property
    def supernodes(self) -> int:
        """SuperNodes the run simulates: ``backend.num_supernodes``, else a default that fits the run.

        One node per logical client where a node must keep playing the same client (``state_store=context``,
        ``node_mapping=partition``) or may play only one client per round (secure aggregation); otherwise
        the clients per round. A node can then play any logical client (its state is in the disk store,
        its data and seeds follow the client id, so the numbers do not depend on the node count), and
        Flower's simulation sweeps every node id every 0.1 s (O(nodes x messages)): idle nodes would make a
        round slower the more clients the run has (simulations/benchmarks/results/scale.md).
        """
        if self.backend.num_supernodes is not None:
            return self.backend.num_supernodes
        fed = self.federation
        if fed.state_store == "context" or fed.node_mapping == "partition" or self.privacy.secure_aggregation:
            return fed.num_clients
        return fed.per_round

    def dump(self) -> dict[str, Any]:
        """The plain dict (JSON / YAML types) of this config, every key present."""
        return self.model_dump(mode="json", exclude_none=False)

    def replace(self, **dotted: Any) -> Config:
        """A copy with ``section.key`` values replaced (validated again), e.g. ``replace(**{"output.dir": p})``."""
        data = self.dump()
        for key, value in dotted.items():
            node = data
            *path, leaf = key.split(".")
            for part in path:
                node = node[part]
            node[leaf] = value
        return Config.model_validate(data)


# ---- cross-section rules ---------------------------------------------------------------------
def _req(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(key, value, allowed)


def check_combinations(cfg: Config) -> None:
    """Every cross-section rule, in the order a reader would check them."""
    from fedcl.data.catalog import check_stream

    check_stream(cfg.stream)
    _methods(cfg)
    _federation(cfg)
    _model(cfg)
    _strategy(cfg)
    _schedule(cfg)
    _privacy(cfg)
    _unlearning(cfg)
    _analytic(cfg)


def _methods(cfg: Config) -> None:
    """Every local method supports the stream's scenario (and its blurry boundaries) by its own declaration."""
    from fedcl.methods import check_compatibility

    for name in cfg.method_names:
        check_compatibility(name, cfg.stream.scenario, cfg.stream.blurry is not None)


def _federation(cfg: Config) -> None:
    fed = cfg.federation
    cpr = fed.clients_per_round
    _req(cpr is None or cpr <= fed.num_clients, "federation.clients_per_round", cpr,
         f"null or an integer in [1, {fed.num_clients}]")
    _req(fed.min_replies <= fed.per_round, "federation.min_replies", fed.min_replies,
         f"an integer in [1, {fed.per_round}] (clients per round)")


def _strategy(cfg: Config) -> None:
    st = cfg.strategy
    if st.aggregator == "krum":
        per_round = cfg.federation.per_round
        _req(per_round >= 2 * st.krum_f + 3, "strategy.krum_f", st.krum_f,
             f"Krum needs clients per round >= 2 * krum_f + 3; {per_round} clients allow krum_f <= "
             f"{max((per_round - 3) // 2, 0)}")
    if st.name == "fot":
        _projectable(cfg)
        # the local sketches ride on train replies, whose metrics SecAgg+ weights by num-examples (r_bar would be
        # biased); the global GPSE query is secured as plain sums
        _req(not (st.gpse_model == "local" and cfg.privacy.secure_aggregation), "strategy.gpse_model", st.gpse_model,
             "'global' under secure aggregation (the local sketches travel with the weighted train replies)")


def _build_model(cfg: Config, in_shape: tuple[int, ...], num_classes: int, forward: bool) -> Any:
    """The config's model on the meta device (shapes only: no memory, no initialisation cost), run once if asked."""
    import torch

    from fedcl.models import build_model

    heads = cfg.stream.num_tasks if cfg.stream.multi_head else 1
    with torch.device("meta"):
        model = build_model(cfg.model, in_shape, num_classes, heads)
        if forward:
            model.eval()
            x = torch.zeros(2, *in_shape)
            model(x, 0) if heads > 1 else model(x)
    return model


def _model(cfg: Config) -> None:
    """The model fits the stream's images (known from the data set's format before any file is read)."""
    from fedcl.data.catalog import expected_shape

    shape, classes = expected_shape(cfg.stream)
    if shape is None:  # only the files know (an IDX folder, an image folder or a Hugging Face set): checked at build
        return
    try:
        _build_model(cfg, shape, classes or 2, forward=True)
    except ConfigError:
        raise
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ConfigError("model", cfg.model.model_dump(), f"a model that takes stream.dataset={cfg.stream.dataset}'s "
                          f"{' x '.join(map(str, shape))} images; this one fails on them: {exc}") from exc


def _projectable(cfg: Config) -> None:
    """FOT projects linear / conv layers other than task heads: the model must have one."""
    from fedcl.data.catalog import expected_shape
    from fedcl.subspace import projectable_layers

    shape, classes = expected_shape(cfg.stream)
    heads = cfg.stream.num_tasks if cfg.stream.multi_head else 1
    try:
        # shapes only the files know: any shape the shipped models take shows whether they have such a layer
        model = _build_model(cfg, shape or (1, 28, 28), classes or 10, forward=False)
    except (ValueError, RuntimeError, TypeError) as exc:
        if shape is None:
            return
        raise ConfigError("model", cfg.model.model_dump(), f"cannot build this model: {exc}") from exc
    _req(bool(projectable_layers(model)), "strategy.name", "fot",
         f"FOT needs a model with a linear or conv layer besides the task heads; model {cfg.model.model_dump()} "
         f"with {heads} heads has none (give it hidden layers, or use strategy=fedavg)")


def _schedule(cfg: Config) -> None:
    """Build the plan once, so a schedule that leaves a task untrained fails before any process starts."""
    from fedcl.data.schedules import make_schedule

    make_schedule(cfg.schedule, cfg.stream.num_tasks, cfg.federation.rounds_per_task, cfg.federation.num_clients,
                  cfg.seed).plans()


def _privacy(cfg: Config) -> None:
    pv = cfg.privacy
    dp = pv.dp
    if dp is not None:
        if dp.mode == "central":
            _req(dp.noise_multiplier is not None, "privacy.dp.noise_multiplier", dp.noise_multiplier,
                 "a number > 0 (central DP needs noise)")
            if pv.secure_aggregation:
                _req(dp.clipping == "client", "privacy.dp.clipping", dp.clipping,
                     "'client' under secure aggregation (the server only sees the sum, so it cannot clip)")
                _req(not dp.adaptive, "privacy.dp.adaptive", True,
                     "false under secure aggregation (the clipped-count bits would travel unmasked)")
        else:
            _req(dp.epsilon is not None, "privacy.dp.epsilon", dp.epsilon,
                 "a number > 0 (local DP's per-round epsilon)")
            _req(not dp.adaptive, "privacy.dp.adaptive", True, "false for local DP (LocalDpMod clips fixed)")
            _req(dp.sampling == "no_amplification", "privacy.dp.sampling", dp.sampling,
                 "'no_amplification' under local DP: every sampled client sends its own noised update, which "
                 "the server sees, so sampling the clients amplifies nothing")
        _dp_releases(cfg)
    if pv.secure_aggregation:
        _secagg(cfg)


# unlearning methods whose step changes the model from un-noised client data (not covered by epsilon)
_UNACCOUNTED_UNLEARNING = {
    "ga": "its gradient-ascent and repair steps change the model with no noise and no accounting",
    "ssd": "its Fisher sums dampen the model with no noise and no accounting",
    "fed_eraser": "it rebuilds the model from the clients' stored un-noised updates",
}


def _dp_releases(cfg: Config) -> None:
    """Under DP every release of the run is noised and accounted; what would leave epsilon is refused."""
    dp = cfg.privacy.dp
    assert dp is not None
    _req("fedcurv" not in cfg.method_names, "method", cfg.method_names,
         "no fedcurv under privacy.dp: its sums F_i and F_i * theta_i change every client's training with no "
         "noise and no accounting (under local DP they even reach the server per client in the clear, so "
         "theta_i = v_i / u_i); use privacy=none or privacy=secagg, or another method")
    unl = cfg.unlearning_name
    if cfg.unlearning["requests"] and unl in _UNACCOUNTED_UNLEARNING:
        raise ConfigError("unlearning.name", unl,
                          f"not {unl} under privacy.dp: {_UNACCOUNTED_UNLEARNING[unl]}, outside epsilon; "
                          "use unlearning=retrain or unlearning=none (the requests' data is excluded from then on), "
                          "or privacy=none")
    _req(not (cfg.strategy.name == "fot" and dp.mode == "local"), "strategy.name", "fot",
         "not fot under local DP: every client's GPSE sketch would reach the server un-noised (its span is the "
         "client's own data); use privacy=dp_central or secagg_dp (DP-GPSE: noised and accounted sketch sums)")


def _secagg(cfg: Config) -> None:
    sa = cfg.privacy.secagg
    _req(sa is not None, "privacy.secagg", sa, "a mapping (see simulations/conf/privacy/secagg.yaml)")
    assert sa is not None
    _req(sa.modulus_range > sa.quantization_range, "privacy.secagg.modulus_range", sa.modulus_range,
         f"an integer > quantization_range ({sa.quantization_range})")
    from fedcl.unlearning import UNLEARNERS

    unl = cfg.unlearning_name
    _req(not UNLEARNERS.get(unl).needs_individual_updates, "unlearning.name", unl,
         "not a history-based (FedEraser-style) method under privacy.secure_aggregation=true: it needs each "
         "client's individual updates, which secure aggregation hides; only privacy=none keeps them (under "
         "privacy.dp its rebuild from un-noised stored updates would be outside epsilon, so it is refused there too)")
    _req(not cfg.eval.local_forgetting, "eval.local_forgetting", True,
         "false under secure aggregation: each client's local accuracies would be summed with the others' (the "
         "client id too), so no per-client number survives; run local forgetting with privacy=none or dp_central")
    if unl == "ga":
        kinds = {str(r.get("kind")) for r in cfg.unlearning["requests"] or [] if isinstance(r, dict)}
        _req("client" not in kinds, "unlearning.name", unl,
             "not ga for a client-level request under secure aggregation: the ascent has one holder (the "
             "leaving client), so SecAgg+ cannot run (> 2 parties) and would hide nothing; use unlearning=ssd or "
             "retrain, or class-level requests")
    agg = cfg.strategy.aggregator
    _req(agg == "mean", "strategy.aggregator", agg,
         "'mean' under privacy.secure_aggregation=true: median, trimmed_mean and krum rank each client's own "
         "update, which secure aggregation hides (the server only gets the sum)")
    fed = cfg.federation
    ns = cfg.backend.num_supernodes
    nodes = cfg.supernodes
    # SecAgg+ keeps its protocol state per SuperNode: a node may play only one logical client per round
    _req(nodes >= fed.per_round, "backend.num_supernodes", ns,
         f"at least the clients per round ({fed.per_round}) under secure aggregation: each SuperNode runs one "
         "SecAgg+ party per round")
    _req(fed.per_round >= 3, "federation.num_clients", fed.num_clients,
         "at least 3 clients per round under secure aggregation (SecAgg+ needs > 2 parties)")
    _secagg_modulus(sa, fed.per_round)


def _secagg_modulus(sa: Any, clients: int) -> None:
    """The masked sum of ``clients`` quantised payloads (each in [0, quantization_range]) must not wrap the modulus."""
    q, mod = sa.quantization_range, sa.modulus_range
    _req(clients * q < mod, "privacy.secagg.modulus_range", mod,
         f"an integer > clients per round x quantization_range = {clients} x {q} = {clients * q}: the sum of "
         f"{clients} quantised values wraps around the modulus (silently wrong sums); raise modulus_range or "
         "lower quantization_range (precision) or the clients per round")
    _req(clients * mod < 2**63, "privacy.secagg.modulus_range", mod,
         f"at most 2^63 / {clients} clients: Flower adds the {clients} masked vectors in int64 before the modulus")


def _unlearning(cfg: Config) -> None:
    from fedcl.unlearning import parse_requests

    ucfg = cfg.unlearning
    stream = cfg.stream
    total = None
    if cfg.schedule_name == "synchronous":
        total = stream.num_tasks * cfg.federation.rounds_per_task
    from fedcl.data.catalog import expected_shape

    _, num_classes = expected_shape(stream)
    reqs = parse_requests(ucfg["requests"], total, cfg.federation.num_clients, num_classes)
    name = cfg.unlearning_name
    _req(name == "none" or bool(reqs), "unlearning.requests", ucfg["requests"],
         f"at least one {{round, kind, target}} request for unlearning={name}")


def _analytic(cfg: Config) -> None:
    """``strategy=analytic`` / ``unlearning=analytic``: fedcl/analytic/rules.py."""
    from fedcl.analytic.rules import check_analytic

    check_analytic(cfg)
