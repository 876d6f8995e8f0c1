"""The statistics record: builder and parser agree, bad replies are refused with a named reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from fedcl.analytic import statistics
from fedcl.analytic.messages import COUNTS, CROSS, GRAM_TRIU, pack_gram, parse_stats, stats_record, unpack_gram
from fedcl.errors import ClientReplyError


def _stats() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(40, 9, generator=g, dtype=torch.float64), torch.randint(0, 4, (40,), generator=g)


def test_round_trip_is_exact_and_halves_the_gram() -> None:
    # Prepare
    s = statistics(*_stats(), 4)
    # Execute
    rec = stats_record(s)
    back = parse_stats(rec, 9, 4)
    # Assert
    assert torch.equal(back.gram, s.gram) and torch.equal(back.cross, s.cross)
    assert torch.equal(back.class_counts, s.class_counts)
    assert rec[GRAM_TRIU].numpy().shape == (45,) and rec[GRAM_TRIU].numpy().dtype == np.float64


def test_sum_of_packed_triangles_is_the_packed_sum() -> None:
    a, b = statistics(*_stats(), 4), statistics(2 * _stats()[0], _stats()[1], 4)
    assert np.array_equal(pack_gram(a.gram) + pack_gram(b.gram), pack_gram(a.gram + b.gram))
    assert torch.equal(unpack_gram(pack_gram(a.gram), 9), a.gram)


def _with(rec: ArrayRecord, name: str, value: np.ndarray) -> ArrayRecord:
    out = ArrayRecord({k: rec[k] for k in rec})
    out[name] = Array(value)
    return out


def test_bad_replies_are_refused() -> None:
    rec = stats_record(statistics(*_stats(), 4))
    with pytest.raises(ClientReplyError, match="not an ArrayRecord"):
        parse_stats(None, 9, 4)
    with pytest.raises(ClientReplyError, match="expansion_dim"):
        parse_stats(rec, 10, 4)
    bad = rec[CROSS].numpy().copy()
    bad[0, 0] = np.nan
    with pytest.raises(ClientReplyError, match="non-finite"):
        parse_stats(_with(rec, CROSS, bad), 9, 4)
    with pytest.raises(ClientReplyError, match="non-negative integers"):
        parse_stats(_with(rec, COUNTS, np.array([1.0, -2.0, 3.0, 0.0])), 9, 4)
    with pytest.raises(ClientReplyError, match="non-negative integers"):
        parse_stats(_with(rec, COUNTS, np.array([1.5, 2.0, 3.0, 0.0])), 9, 4)
    missing = ArrayRecord({k: rec[k] for k in rec if k != COUNTS})
    with pytest.raises(ClientReplyError, match="missing"):
        parse_stats(missing, 9, 4)


def test_counts_from_secagg_quantisation_are_rounded() -> None:
    rec = stats_record(statistics(*_stats(), 4))
    noisy = rec[COUNTS].numpy() + 2e-4
    assert np.array_equal(parse_stats(_with(rec, COUNTS, noisy), 9, 4).class_counts.numpy(), rec[COUNTS].numpy())
