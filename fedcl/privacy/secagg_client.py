"""SecAgg+ on the client: Flower's ``secaggplus_mod`` around fedcl's handlers (Bell et al., CCS 2020).

No cryptography lives here: Flower's mod runs the protocol stages; this mod hands the
collect-masked-vectors stage (the one carrying fedcl's own message) to the rest of the
mod chain and the app's dispatcher, and turns the reply into the vector Flower masks
(:mod:`fedcl.privacy.secagg_protocol`). The original action travels in the message's
config record (``keys.ACTION``), so the dispatcher calls the right handler.
"""

from __future__ import annotations

import json
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

import fedcl.keys as keys
from fedcl.config import from_json
from fedcl.privacy.secagg_protocol import LAYOUT, MAX_WEIGHT, vectorize


def is_secagg_message(msg: Message) -> bool:
    """Whether ``msg`` is a stage of Flower's SecAgg+ protocol."""
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    return RECORD_KEY_CONFIGS in msg.content.config_records


def secagg_client_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Flower's ``secaggplus_mod`` around the rest of the chain (the DP mod, then the dispatcher)."""
    from flwr.client.mod import secaggplus_mod

    def inner(m: Message, c: Context) -> Message:
        from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

        del m.content[RECORD_KEY_CONFIGS]  # the handlers (and Flower's DP mods) see fedcl's message only
        rec = cast(ConfigRecord, m.content[keys.CONFIG])
        base = m.content.get(keys.ARRAYS)
        out = call_next(m, c)
        if out.has_error():
            return out
        cfg = from_json(str(rec[keys.RUN_CONFIG_JSON]))
        assert cfg.privacy.secagg is not None
        vector, layout = vectorize(out.content, base if isinstance(base, ArrayRecord) else None, cfg.privacy.secagg,
                                   float(cast(float, rec[MAX_WEIGHT])), dp=cfg.privacy.dp is not None)
        return Message(_legacy_fitres(vector, layout), reply_to=m)

    return cast(Message, secaggplus_mod(msg, ctxt, inner))


def _legacy_fitres(vector: list[np.ndarray], layout: dict[str, Any]) -> RecordDict:
    """The legacy ``FitRes`` layout ``secaggplus_mod`` masks (weight 1: weighting is inside the vector)."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(vector), 1, {LAYOUT: json.dumps(layout)})
    return compat.fitres_to_recorddict(res, keep_input=False)


