"""What each ``stream.dataset`` is before any file is read: its image shape and classes, and the stream rules.

The config check runs before any process starts and never reads data, yet it must
know the images a model will see (``model=alexnet`` on 1 x 8 x 8 images, FOT's
projectable layers, a 1-value normalisation of RGB images). The published formats
fix them: CIFAR's pickles hold 3 x 32 x 32 images, Tiny-ImageNet's JPEGs are
64 x 64, 5-Datasets is assembled at 3 x 32 x 32, mini-ImageNet at 84 x 84. Where
only the files know (any IDX folder, an image-folder tree or a Hugging Face set
without ``stream.image_size``), the shape is unknown here and checked when the
stream is built.
"""

from __future__ import annotations

from fedcl.config.schema import Stream
from fedcl.errors import ConfigError

# dataset -> ((channels, height, width), classes) of its published format
KNOWN: dict[str, tuple[tuple[int, int, int], int]] = {
    "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
    "five_datasets": ((3, 32, 32), 50),
    "tiny_imagenet": ((3, 64, 64), 200),
    "mini_imagenet": ((3, 84, 84), 100),
}
NO_DATA_DIR = ("synthetic", "hf")  # data sets that need no stream.data_dir
RESIZABLE = ("image_folder", "hf")  # readers that take stream.image_size


def expected_shape(stream: Stream) -> tuple[tuple[int, ...] | None, int | None]:
    """``(in_shape, num_classes)`` of the stream's data, each None when only the files can tell."""
    if stream.synthetic is not None and stream.dataset == "synthetic":
        return tuple(stream.synthetic.image_shape), stream.synthetic.num_classes
    if stream.dataset in KNOWN:
        shape, classes = KNOWN[stream.dataset]
        return shape, classes
    return None, None


def check_stream(stream: Stream) -> None:
    """The rules among the ``stream`` keys (each a :class:`ConfigError` naming its key)."""
    ds = stream.dataset
    if ds == "synthetic" and stream.synthetic is None:
        raise ConfigError("stream.synthetic", None, "a mapping; see simulations/conf/stream/synthetic.yaml")
    if ds not in NO_DATA_DIR and not stream.data_dir:
        what = "a folder with MNIST-format IDX files" if ds in ("fashion_mnist", "mnist_format") else (
            f"the folder holding {ds} in its published format (README: Standard benchmarks)")
        raise ConfigError("stream.data_dir", stream.data_dir, what)
    if ds == "hf" and not stream.hf_path:
        raise ConfigError("stream.hf_path", stream.hf_path, "a Hugging Face hub name (already in the local "
                          "datasets cache) or a folder written by DatasetDict.save_to_disk")
    if stream.sources is not None and ds != "five_datasets":
        raise ConfigError("stream.sources", stream.sources.model_dump(), "null unless stream.dataset=five_datasets")
    if ds == "five_datasets" and stream.normalize is not None:
        raise ConfigError("stream.normalize", stream.normalize.model_dump(), "null for five_datasets: each source "
                          "has its own statistics, stream.sources.<name>.normalize")
    if stream.image_size is not None and ds not in RESIZABLE:
        raise ConfigError("stream.image_size", stream.image_size, f"null unless stream.dataset is one of "
                          f"{list(RESIZABLE)} (the other formats have one published size)")
    if stream.augment is not None and stream.scenario == "domain_permuted":
        raise ConfigError("stream.augment", stream.augment.model_dump(), "null for domain_permuted streams: cropping "
                          "or flipping permuted pixels mixes them; augment class- or task-incremental streams")
    _check_channels(stream)
    if stream.partition.startswith("flwr_"):
        from fedcl.data.flwr_partition import check_partitioner

        check_partitioner(stream.partition, stream.flwr_partitioner)


def _check_channels(stream: Stream) -> None:
    shape, _ = expected_shape(stream)
    channels = shape[0] if shape is not None else None
    specs = [("stream.normalize", stream.normalize)]
    if stream.sources is not None:
        specs += [(f"stream.sources.{k}.normalize", getattr(stream.sources, k).normalize)
                  for k in type(stream.sources).model_fields]
    for key, spec in specs:
        if spec is None:
            continue
        if len(spec.mean) != len(spec.std):
            raise ConfigError(f"{key}.std", spec.std, f"as many values as mean ({len(spec.mean)})")
        if channels is not None and len(spec.mean) not in (1, channels):
            raise ConfigError(f"{key}.mean", spec.mean, f"1 or {channels} values (stream.dataset={stream.dataset} "
                              f"has {channels}-channel images)")
