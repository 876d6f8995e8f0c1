"""Analytic (closed-form) federated continual learning and unlearning over sums of statistics.

A frozen backbone and a seeded random expansion map every sample to features ``X``; clients
send ``X^T X`` and ``X^T Y``; the server keeps their sums and solves the ridge regression
``W = (sum X^T X + gamma I)^-1 sum X^T Y`` by Cholesky. The result is the centralised ridge
solution on the union of the data (any split, any order), so nothing is forgotten and a
deletion is a subtraction. Design and wiring (messages, rounds, config keys, what is exact
when): ``docs/analytic.md``.

References: ACIL (Zhuang et al., NeurIPS 2022); AFL (He et al., "AFL: A Single-Round Analytic
Approach for Federated Learning with Pre-trained Models", CVPR 2025); ACU (Tang et al., "ACU:
Analytic Continual Unlearning for Efficient and Exact Forgetting with Privacy Preservation",
arXiv:2505.12239, 2025).
"""

from fedcl.analytic.features import (
    ACTIVATIONS,
    RandomExpansion,
    backbone_dim,
    backbone_of,
    client_statistics,
    features,
    load_backbone,
)
from fedcl.analytic.head import MASKED_LOGIT, AnalyticHead, active_classes, install_head
from fedcl.analytic.ridge import Statistics, gram_factor, ridge_inverse, solve_ridge, statistics, woodbury_forget

__all__ = [
    "ACTIVATIONS", "MASKED_LOGIT", "AnalyticHead", "RandomExpansion", "Statistics", "active_classes",
    "backbone_dim", "backbone_of", "client_statistics", "features", "gram_factor", "install_head",
    "load_backbone", "ridge_inverse", "solve_ridge", "statistics", "woodbury_forget",
]
