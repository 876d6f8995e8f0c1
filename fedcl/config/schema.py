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
# flwr-datasets' partitioners that split a label array (stream.partition: flwr_<name>; fedcl/data/flwr_partition.py)
FLWR_PARTITIONERS = {
    "flwr_iid": "IidPartitioner", "flwr_dirichlet": "DirichletPartitioner", "flwr_shard": "ShardPartitioner",
    "flwr_pathological": "PathologicalPartitioner", "flwr_linear": "LinearPartitioner",
    "flwr_square": "SquarePartitioner", "flwr_exponential": "ExponentialPartitioner",
}
PARTITIONS = ("iid", "shards", "dirichlet", *FLWR_PARTITIONERS)
IDX_DATASETS = ("fashion_mnist", "mnist_format")
IMAGE_DATASETS = ("cifar10", "cifar100", "five_datasets", "tiny_imagenet", "mini_imagenet", "image_folder", "hf")
DATASETS = (*IDX_DATASETS, "synthetic", *IMAGE_DATASETS)
FIVE_SOURCES = ("cifar10", "mnist", "svhn", "fashion_mnist", "notmnist")  # 5-Datasets' task order (GPM, FOT)
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


Folder = Annotated[str | None, Field(description="null or a folder path")]


class Normalize(Section):
    """Per-channel statistics on the [0, 1] scale of uint8 images: ``x <- (x / 255 - mean) / std``."""

    mean: Annotated[list[float], Field(min_length=1, description="a list of numbers, one per channel (or one for all)")]
    std: Annotated[
        list[Annotated[float, Field(gt=0)]],
        Field(min_length=1, description="a list of numbers > 0, one per channel (or one for all)"),
    ]


class Source(Section):
    """One source of 5-Datasets: where it is (null: under ``stream.data_dir``) and its own statistics."""

    data_dir: Annotated[str | None, Field(description="null (found under stream.data_dir) or the source's folder")]
    normalize: Annotated[Normalize | None, Field(description="null (measured on its train split) or {mean, std}")]


class Sources(Section):
    """5-Datasets' sources, in its task order."""

    cifar10: Source
    mnist: Source
    svhn: Source
    fashion_mnist: Source
    notmnist: Source


class Augment(Section):
    """Clients' train-time augmentation: ``RandomCrop(size, padding=crop_padding)`` + ``RandomHorizontalFlip``."""

    crop_padding: Annotated[int, Field(ge=0, description="an integer >= 0 (pixels of zero padding; 0 = no crop)")]
    hflip: Flag


class Stream(Section):
    dataset: Annotated[Literal[DATASETS], Field(description=f"one of {list(DATASETS)}")]  # type: ignore[valid-type]
    data_dir: Annotated[
        str | None,
        Field(description="the folder holding the data set (README: Standard benchmarks); null only for synthetic "
                          "and hf"),
    ]
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
    flwr_partitioner: Annotated[
        dict[str, Any] | None,
        Field(description="null or the keyword arguments of the flwr-datasets partitioner that stream.partition "
                          "names, e.g. {alpha: 0.5, min_partition_size: 0} (pip install 'fedcl[hf]')"),
    ]
    normalize: Annotated[
        Normalize | None,
        Field(description="null (per-channel statistics measured on the train split) or {mean: [...], std: [...]}"),
    ]
    augment: Annotated[Augment | None, Field(description="null or {crop_padding: 4, hflip: true}")]
    sources: Annotated[
        Sources | None,
        Field(description="null, or for dataset five_datasets each source's {data_dir, normalize}"),
    ]
    image_size: Annotated[
        list[PosInt] | None,
        Field(min_length=2, max_length=2, description="null or [height, width] (integers >= 1) to resize images to"),
    ]
    cache_dir: Annotated[str | None, Field(description="null (<data_dir>/.fedcl_cache) or a folder for decoded arrays")]
    hf_path: Annotated[
        str | None, Field(description="a Hugging Face hub name (cached locally) or a folder written by save_to_disk")
    ]
    hf_name: Annotated[str | None, Field(description="null or the hub configuration name")]
    hf_train_split: Annotated[str, Field(min_length=1, description="a split name, e.g. 'train'")]
    hf_test_split: Annotated[str, Field(min_length=1, description="a split name, e.g. 'test'")]
    hf_image_column: Annotated[str | None, Field(description="null (the first Image feature) or a column name")]
    hf_label_column: Annotated[str | None, Field(description="null (the first ClassLabel feature) or a column name")]
    hf_cache_dir: Folder
    synthetic: Synthetic | None = None  # only the synthetic stream has this block

    @model_validator(mode="after")
    def _data_source(self) -> Stream:
        # the rules among the other stream keys need each data set's format (fedcl/data/catalog.py, which reads
        # this schema): the root's validator and build_stream apply them
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


class AlexNetModel(Section):
    """FOT's / GPM's AlexNet for Split CIFAR-100 (``fedcl/models/alexnet.py``)."""

    name: Literal["alexnet"]
    batch_norm: Flag
    hidden: PosInt
    dropout_conv: Dropout
    dropout_fc: Dropout
    head_bias: Flag


class ResNet18ReducedModel(Section):
    """GPM's / FOT's reduced ResNet-18 for 5-Datasets and mini-ImageNet (``fedcl/models/resnet18_reduced.py``)."""

    name: Literal["resnet18_reduced"]
    nf: PosInt
    stem_stride: Annotated[int, Field(ge=1, le=4, description="an integer in [1, 4] (2 for 84 x 84 inputs)")]
    batch_norm: Flag
    head_bias: Flag


ModelConfig = MLPModel | ConvNetModel | AlexNetModel | ResNet18ReducedModel
Model = Annotated[ModelConfig, Field(discriminator="name")]


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


class AnalyticStrategy(FedAvgStrategy):
    """Analytic keys (``strategies/analytic.py``, ``docs/analytic.md``); FedAvg's keys drive the base rounds."""

    name: Literal["analytic"]  # type: ignore[assignment]
    base_rounds: Annotated[
        int | None,
        Field(ge=0, description="null (every round of task 0; 0 with strategy.backbone) or an integer >= 0 of "
                                "FedAvg rounds before the backbone is frozen"),
    ]
    backbone: Annotated[str | None, Field(description="null or a run's final.pt / checkpoint / state_dict file")]
    expansion_dim: PosInt
    activation: Annotated[Literal["relu", "tanh", "none"], Field(description="one of ['relu', 'tanh', 'none']")]
    gamma: NonNegNum
    feature_bound: Annotated[
        float | None, Field(gt=0, description="null or a number > 0 (L2 clip of each sample's features)")
    ]
    max_samples: Annotated[
        int | None,
        Field(ge=1, description="null (a client's whole data) or an integer >= 1 (samples per client and task)"),
    ]
    dp_unit: Annotated[
        Literal["sample", "client"],
        Field(description="'sample' (one sample's features, norm <= feature_bound) or 'client' (all of one "
                          "client's samples in a release)"),
    ]


Strategy = Annotated[FedAvgStrategy | FOTStrategy | AnalyticStrategy, Field(discriminator="name")]


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
    gpse_noise_multiplier: Annotated[
        float | None,
        Field(gt=0, description="null (privacy.dp.noise_multiplier) or a number > 0 (DP-GPSE noise / sensitivity)"),
    ]


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
