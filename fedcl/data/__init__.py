"""Datasets, continual task streams, client partitions and client schedules."""

from fedcl.data.idx import load_idx_folder, read_idx
from fedcl.data.partition import partition_labels
from fedcl.data.schedules import Schedule, make_schedule
from fedcl.data.streams import Stream, Task, build_stream
from fedcl.data.synthetic import make_synthetic

__all__ = [
    "Schedule",
    "Stream",
    "Task",
    "build_stream",
    "load_idx_folder",
    "make_schedule",
    "make_synthetic",
    "partition_labels",
    "read_idx",
]
