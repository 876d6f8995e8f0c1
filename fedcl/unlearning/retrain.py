"""The retrain oracle: the same run, same seed, with the forgotten data removed from the start."""

from __future__ import annotations

from fedcl.errors import ConfigError
from fedcl.unlearning.base import Unlearner


class Retrain(Unlearner):
    """Exact unlearning by retraining without the data (the yardstick of every other method).

    Bourtoule et al., "Machine Unlearning" (IEEE S&P 2021) call retraining from
    scratch on the remaining data the only exact method. Here the run excludes the
    requested clients, classes and samples from round 1, so its model at a request round
    *is* the model retrained without the data; its cost is the request round's number of
    rounds and the wall time spent until then. It saves that model
    (``unlearning/oracle-round-<r>.pt``, with what it excluded) so other methods' runs can
    compare with it (``unlearning.oracle_dir``).

    Sequential requests (continual unlearning): the oracle at the k-th request round is
    the run without the data of the first k request rounds, and *with* the data requested
    later (not requested yet). One run gives one such point: ``point=k``.

    Parameters
    ----------
    point : int | None, default None
        ``None``: every request is removed from round 1 (the oracle of the last request
        round; also of every round when all requests share one). ``k`` (1-based): the
        requests of the first ``k`` request rounds are removed from round 1, later ones
        are ignored; the oracle is saved at the k-th request round only.
    """

    name = "retrain"
    removes_from_start = True

    def __init__(self, point: int | None = None) -> None:
        if point is not None and (isinstance(point, bool) or not isinstance(point, int) or point < 1):
            raise ConfigError("unlearning.point", point, "null or the 1-based index of a request round")
        self.point = point
