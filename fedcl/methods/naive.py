"""Naive fine-tuning: the lower bound every continual-learning method must beat."""

from __future__ import annotations

from fedcl.methods.base import CLMethod


class Naive(CLMethod):
    """Plain local SGD on the current task, no protection against forgetting.

    Parameters
    ----------
    None
    """

    name = "naive"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True
