"""Robust inner aggregators for the FCL strategies (``strategy.aggregator``), on Flower's math.

* ``mean``: FedAvg's ``num-examples``-weighted mean (McMahan et al., AISTATS 2017);
* ``median``: coordinate-wise median (Yin et al., "Byzantine-Robust Distributed
  Learning: Towards Optimal Statistical Rates", ICML 2018);
* ``trimmed_mean``: coordinate-wise mean without the ``trim_beta`` largest and
  smallest fractions (Yin et al., 2018);
* ``krum``: the one update closest to its ``n - f - 2`` neighbours (Blanchard et
  al., "Machine Learning with Adversaries", NeurIPS 2017), ``f = krum_f``.

The three robust rules ignore ``num-examples`` (a forged count is exactly what
they must not trust). The arithmetic is Flower's
(``flwr.server.strategy.aggregate``); only the record plumbing is here.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict
from flwr.server.strategy.aggregate import aggregate_krum, aggregate_median, aggregate_trimmed_avg

import fedcl.keys as keys
from fedcl.errors import ConfigError

AGGREGATORS = ("mean", "median", "trimmed_mean", "krum")


def check_aggregator(name: str, trim_beta: float, krum_f: int) -> None:
    """Raise :class:`ConfigError` for an unknown aggregator or out-of-range parameter."""
    if name not in AGGREGATORS:
        raise ConfigError("strategy.aggregator", name, f"one of {list(AGGREGATORS)}")
    if isinstance(trim_beta, bool) or not isinstance(trim_beta, (int, float)) or not 0.0 <= trim_beta < 0.5:
        raise ConfigError("strategy.trim_beta", trim_beta, "a number in [0, 0.5)")
    if isinstance(krum_f, bool) or not isinstance(krum_f, int) or krum_f < 0:
        raise ConfigError("strategy.krum_f", krum_f, "an integer >= 0 (clients assumed malicious)")


def robust_aggregate(
    contents: list[RecordDict], aggregator: str, trim_beta: float = 0.1, krum_f: int = 0
) -> ArrayRecord:
    """Aggregate the ``arrays`` records of validated replies with a robust rule.

    Parameters
    ----------
    contents : list[RecordDict]
        Reply contents (already validated: same names, shapes and dtypes).
    aggregator : str
        ``median``, ``trimmed_mean`` or ``krum``.
    trim_beta : float
        Fraction cut at each end by ``trimmed_mean``.
    krum_f : int
        Assumed number of malicious clients for ``krum``.

    Returns
    -------
    ArrayRecord
        The aggregate, each array in the dtype the clients sent.
    """
    if not contents:
        raise ValueError("robust_aggregate needs at least one reply")
    first = contents[0][keys.ARRAYS]
    assert isinstance(first, ArrayRecord)
    names = list(first.keys())
    results = []
    for c in contents:
        rec = c[keys.ARRAYS]
        assert isinstance(rec, ArrayRecord)
        results.append(([rec[k].numpy() for k in names], 1))
    if aggregator == "median":
        out = aggregate_median(results)
    elif aggregator == "trimmed_mean":
        out = aggregate_trimmed_avg(results, float(trim_beta))
    elif aggregator == "krum":
        out = aggregate_krum(results, num_malicious=int(krum_f), to_keep=0)
    else:
        raise ConfigError("strategy.aggregator", aggregator, f"one of {list(AGGREGATORS)}")
    dtypes = [results[0][0][i].dtype for i in range(len(names))]
    # the median of integer buffers (e.g. BatchNorm's step counter) is a float: cast back
    return ArrayRecord(
        {k: Array(np.asarray(v).astype(dt, copy=False)) for k, v, dt in zip(names, out, dtypes, strict=True)}
    )
