"""The typed config sections: one strict pydantic model per section of ``simulations/conf``.

Hydra composes ``simulations/conf`` (the one place the defaults live); these models
validate the result: types are strict, unknown keys are refused, and every range and
choice is declared on its field (its ``description`` is what an error prints). The
root model and the rules that tie sections together are in :mod:`fedcl.config.root`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from fedcl.config.types import (
    Flag,
    Fraction,
    NonNegInt,
    NonNegNum,
    OpenFraction,
    PosInt,
    PosNum,
    Prob,
    Seconds,
    Section,
)

SCENARIOS = ("class_incremental", "task_incremental", "domain_permuted")
PARTITIONS = ("iid", "shards", "dirichlet")
DATASETS = ("fashion_mnist", "mnist_format", "synthetic")
AGGREGATORS = ("mean", "median", "trimmed_mean", "krum")

Dropout = Annotated[float, Field(ge=0, lt=1, description="a number in [0, 1)")]
Widths = Annotated[list[PosInt], Field(description="a list of layer widths (integers >= 1)")]


# ---- federation, training, evaluation, outputs ------------------------------------------------
class Federation(Section):
    num_clients: PosInt
    clients_per_round: PosInt | None
    rounds_per_task: PosInt
    state_store: Annotated[Literal["disk", "context"], Field(description="'disk' or 'context'")]
    state_memory_mb: Annotated[int, Field(ge=1, description="an integer >= 1 (MiB of client state)")]
    min_replies: PosInt
    round_retries: NonNegInt
    round_timeout_s: Annotated[float | None, Field(gt=0, description="null (backend.timeout_s) or seconds > 0")]
    node_mapping: Annotated[
        Literal["modulo", "partition"],
        Field(description="'modulo' (client c -> sorted node ids[c % #nodes]) or 'partition' (the node whose "
                          "partition-id is c)"),
    ]

    @property
    def per_round(self) -> int:
        """Clients trained per round at most (``clients_per_round``, else every client)."""
        return self.clients_per_round or self.num_clients


class Train(Section):
    lr: PosNum
    local_epochs: PosInt
    batch_size: PosInt
    momentum: NonNegNum
    weight_decay: NonNegNum


class Eval(Section):
    subset_size: Annotated[PosInt | None, Field(description="null (full test split) or an integer >= 1")]
    batch_size: PosInt
    full_test_at_task_end: Flag
    local_forgetting: Flag


class Output(Section):
    dir: Annotated[str | None, Field(description="null or a folder path")]
    plots: Flag


class Checkpoint(Section):
    enabled: Flag
    every_rounds: NonNegInt
    keep: NonNegInt


class Logging(Section):
    tensorboard: Flag
    wandb: Flag
    mlflow: Flag
    project: str


class Backend(Section):
    name: Annotated[
        Literal["local", "inprocess"],
        Field(description="'local' (Flower simulation: SuperLink + Ray) or 'inprocess' (one Python process)"),
    ]
    num_supernodes: Annotated[PosInt | None, Field(description="null or an integer >= 1")]
    client_num_cpus: PosNum
    client_num_gpus: Annotated[float, Field(ge=0, description="a number >= 0 (fractions share a GPU)")]
    ray_address: str | None
    timeout_s: Seconds
    data_cache_mb: Annotated[int, Field(ge=0, description="an integer >= 0 (MiB per process; 0 = no cache)")]
    pull_interval_s: Annotated[float, Field(gt=0, le=10, description="a number of seconds in (0, 10]")]

    @property
    def reply_timeout_s(self) -> float:
        """How long a query waits for its replies."""
        return self.timeout_s


class Faults(Section):
    name: str
    crash_prob: Prob
    nan_prob: Prob
    delay_prob: Prob
    delay_s: NonNegNum


# ---- stream and model -------------------------------------------------------------------------
class Synthetic(Section):
    num_classes: Annotated[int, Field(ge=2, description="an integer >= 2")]
    image_shape: Annotated[
        list[PosInt], Field(min_length=3, max_length=3, description="[channels, height, width], integers >= 1")
    ]
    train_per_class: PosInt
    test_per_class: PosInt
    noise: NonNegNum
    seed: int


class Stream(Section):
    dataset: Annotated[Literal[DATASETS], Field(description=f"one of {list(DATASETS)}")]  # type: ignore[valid-type]
    data_dir: Annotated[str | None, Field(description="a folder with MNIST-format IDX files")]
    scenario: Annotated[Literal[SCENARIOS], Field(description=f"one of {list(SCENARIOS)}")]  # type: ignore[valid-type]
    num_tasks: PosInt
    class_order: Annotated[
        None | Literal["shuffle"] | list[int],
        Field(description='null, "shuffle" or a list holding each class once'),
    ]
    partition: Annotated[Literal[PARTITIONS], Field(description=f"one of {list(PARTITIONS)}")]  # type: ignore[valid-type]
    alpha: PosNum
    shards_per_client: PosInt
    min_samples_per_client: NonNegInt
    blurry: dict[str, Any] | None
    synthetic: Synthetic | None = None  # only the synthetic stream has this block

    @model_validator(mode="after")
    def _data_source(self) -> Stream:
        from fedcl.errors import ConfigError

        if self.dataset == "synthetic" and self.synthetic is None:
            raise ConfigError("stream.synthetic", None, "a mapping; see simulations/conf/stream/synthetic.yaml")
        if self.dataset != "synthetic" and not self.data_dir:
            raise ConfigError("stream.data_dir", self.data_dir, "a folder with MNIST-format IDX files")
        if self.blurry is not None:
            from fedcl.data.blurry import check_blurry

            check_blurry(self.blurry, self.scenario)
        return self

    @property
    def multi_head(self) -> bool:
        """Task-incremental streams have one head per task."""
        return self.scenario == "task_incremental"


class MLPModel(Section):
    name: Literal["mlp"]
    hidden: Widths
    dropout: Annotated[
        Dropout | list[Dropout],
        Field(description="a number in [0, 1) or one such number per hidden layer (FOT's MLP: [0.2, 0.5, 0.5])"),
    ]

    @model_validator(mode="after")
    def _one_rate_per_layer(self) -> MLPModel:
        from fedcl.errors import ConfigError

        if isinstance(self.dropout, list) and len(self.dropout) != len(self.hidden):
            raise ConfigError("model.dropout", self.dropout,
                              f"one rate per hidden layer ({len(self.hidden)} for model.hidden={self.hidden}) "
                              "or a single number")
        return self


class ConvNetModel(Section):
    name: Literal["convnet"]
    channels: Annotated[list[PosInt], Field(description="a list of channel counts (integers >= 1)")]
    hidden: PosInt
    dropout: Dropout


Model = Annotated[MLPModel | ConvNetModel, Field(discriminator="name")]


# ---- strategy ------------------------------------------------------------------------------------
class FedAvgStrategy(Section):
    """FedAvg / FedProx keys (``strategies/fedavg.py``)."""

    name: Literal["fedavg", "fedprox"]
    proximal_mu: NonNegNum
    aggregator: Annotated[Literal[AGGREGATORS], Field(description=f"one of {list(AGGREGATORS)}")]  # type: ignore[valid-type]
    trim_beta: Annotated[float, Field(ge=0, lt=0.5, description="a number in [0, 0.5)")]
    krum_f: Annotated[int, Field(ge=0, description="an integer >= 0 (clients assumed malicious)")]


class FOTStrategy(FedAvgStrategy):
    """FOT keys (``strategies/fot.py``) on top of FedAvg's."""

    name: Literal["fot"]  # type: ignore[assignment]
    eps: Annotated[float, Field(gt=0, le=1, description="an energy threshold in (0, 1]")]
    d_eps: NonNegNum
    sketch_factor: PosInt
    gpse_max_samples: PosInt
    gpse_model: Annotated[
        Literal["global", "local"],
        Field(description="'global' (every client of the task sketches the task's final global model) or 'local' "
                          "(the clients of the task's last round sketch their locally trained models, official)"),
    ]
    gpse_dropout: Annotated[bool, Field(description="true (activations with dropout on, official) or false (eval "
                                                    "mode)")]
    min_new_directions: NonNegInt


Strategy = Annotated[FedAvgStrategy | FOTStrategy, Field(discriminator="name")]


def strategy_params(strategy: FedAvgStrategy) -> dict[str, Any]:
    """The strategy's keys as constructor arguments (everything but ``name``)."""
    return strategy.model_dump(exclude={"name"})


# ---- privacy ---------------------------------------------------------------------------------
class DP(Section):
    mode: Annotated[Literal["central", "local"], Field(description="one of ['central', 'local']")]
    clipping: Annotated[Literal["client", "server"], Field(description="one of ['client', 'server']")]
    adaptive: Flag
    noise_multiplier: Annotated[float | None, Field(gt=0, description="a number > 0 (central DP needs noise)")]
    clipping_norm: PosNum
    target_clipped_quantile: Fraction
    clip_norm_lr: PosNum
    clipped_count_stddev: Annotated[float | None, Field(gt=0, description="null or a number > 0")]
    delta: OpenFraction
    sampling: Annotated[
        Literal["no_amplification", "without_replacement"],
        Field(description="one of ['no_amplification', 'without_replacement']"),
    ]
    max_epsilon: Annotated[float | None, Field(gt=0, description="null or a number > 0")]
    epsilon: Annotated[float | None, Field(gt=0, description="a number > 0 (local DP's per-round epsilon)")]


class SecAggRanges(Section):
    update: PosNum
    sketch: PosNum
    fisher: Annotated[float | None, Field(gt=0, description="null (the sketch range) or a number > 0")]
    stat: PosNum


class SecAgg(Section):
    num_shares: Annotated[float, Field(gt=0, description="a fraction in (0, 1] or an integer count")]
    reconstruction_threshold: Annotated[float, Field(gt=0, description="a fraction in (0, 1] or an integer count")]
    quantization_range: Annotated[int, Field(gt=1, description="an integer > 1")]
    modulus_range: Annotated[int, Field(gt=1, description="an integer > quantization_range")]
    ranges: SecAggRanges
    max_weight: Annotated[
        float | None,
        Field(ge=1, description="null (the stream's largest client data set) or a number >= 1 (a bound on "
                                "num-examples)"),
    ]
    timeout_s: Seconds


class Privacy(Section):
    name: str
    secure_aggregation: Flag
    dp: DP | None
    secagg: SecAgg | None = None
