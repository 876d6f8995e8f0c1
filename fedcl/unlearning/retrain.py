"""The retrain oracle: the same run, same seed, with the forgotten data removed from the start."""

from __future__ import annotations

from fedcl.unlearning.base import Unlearner


class Retrain(Unlearner):
    """Exact unlearning by retraining without the data (the yardstick of every other method).

    Bourtoule et al., "Machine Unlearning" (IEEE S&P 2021) call retraining from
    scratch on the remaining data the only exact method. Here the run excludes every
    requested client and class from round 1, so its model at the request round *is*
    the model retrained without the data; its cost is the request round's number of
    rounds and the wall time spent until then. It saves that model
    (``unlearning/oracle-round-<r>.pt``) so other methods' runs can compare with it
    (``unlearning.oracle_dir``).
    """

    name = "retrain"
    removes_from_start = True
