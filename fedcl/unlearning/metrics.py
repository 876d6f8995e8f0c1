"""Pure functions judging an unlearned model: accuracy, output divergence, membership inference.

Membership inference follows the threshold attacks of Yeom et al., "Privacy Risk in
Machine Learning: Analyzing the Connection to Overfitting" (CSF 2018): a sample is
called a member when its loss is below (or its prediction entropy is below) a
threshold. Sweeping the threshold gives the ROC curve; its AUC is the probability
that a random member scores as "more member" than a random non-member (the
Mann-Whitney U statistic), so 0.5 means the attacker cannot tell forgotten training
data from data the model never saw.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

# masked (multi-head) logits are -inf; clamp them so softmax gives exact zeros without NaN in KL
_LOGIT_FLOOR = -1e4


def auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """Area under the ROC curve of "higher score = member" (ties count one half).

    Parameters
    ----------
    member_scores, nonmember_scores : np.ndarray
        Attack scores of the members (forget set) and of the non-members (unseen data).

    Returns
    -------
    float
        P(score_member > score_nonmember) + 0.5 P(equal); NaN when either set is empty.
    """
    m = np.asarray(member_scores, dtype=np.float64).ravel()
    n = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    if m.size == 0 or n.size == 0:
        return float("nan")
    allv = np.concatenate([m, n])
    # average ranks handle ties exactly (Mann-Whitney U)
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size, dtype=np.float64)
    sorted_v = allv[order]
    i = 0
    while i < allv.size:
        j = i
        while j + 1 < allv.size and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    u = ranks[: m.size].sum() - m.size * (m.size + 1) / 2.0
    return float(u / (m.size * n.size))


def mia_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> float:
    """Loss-threshold membership-inference AUC (members have lower loss: score = -loss)."""
    return auc(-np.asarray(member_losses), -np.asarray(nonmember_losses))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Prediction entropy per row (for the entropy-threshold attack: score = -entropy)."""
    logp = F.log_softmax(logits.clamp_min(_LOGIT_FLOOR).double(), dim=1)
    return -(logp.exp() * logp).sum(1)


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every row."""
    return F.cross_entropy(logits.clamp_min(_LOGIT_FLOOR), y, reduction="none")


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float | None:
    """Top-1 accuracy; None for an empty set."""
    if y.numel() == 0:
        return None
    return float((logits.argmax(1) == y).float().mean().item())


def mean_kl(ref_logits: torch.Tensor, logits: torch.Tensor) -> float | None:
    """Mean KL(p_ref || p) over rows: how far a model's outputs are from the reference (oracle) model's."""
    if ref_logits.shape[0] == 0:
        return None
    logp_ref = F.log_softmax(ref_logits.clamp_min(_LOGIT_FLOOR).double(), dim=1)
    logp = F.log_softmax(logits.clamp_min(_LOGIT_FLOOR).double(), dim=1)
    kl = F.kl_div(logp, logp_ref, log_target=True, reduction="none").sum(1)
    return float(kl.mean().item())
