"""The ClientApp's privacy mod: SecAgg+ stages, then Flower's DP client mods, chosen per run from the message."""

from __future__ import annotations

from typing import Any

from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp.mod import LocalDpMod, adaptiveclipping_mod, fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable

import fedcl.keys as keys
from fedcl.client.instruction import TRAIN, action_of
from fedcl.config import from_json
from fedcl.config.schema import DP
from fedcl.privacy.secagg_client import is_secagg_message, secagg_client_mod


def _dp_config(msg: Message) -> DP | None:
    rec = msg.content.config_records.get(keys.CONFIG)
    if not isinstance(rec, ConfigRecord) or keys.RUN_CONFIG_JSON not in rec:
        return None
    return from_json(str(rec[keys.RUN_CONFIG_JSON])).privacy.dp


def dp_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Flower's client-side DP on ``train`` messages, as ``privacy.dp`` asks.

    * central DP, client-side clipping: ``fixedclipping_mod`` / ``adaptiveclipping_mod``
      (the server's ``DifferentialPrivacyClientSide*Clipping`` wrapper sends the norm);
    * local DP: ``LocalDpMod(C, C, epsilon, delta)`` clips the update to C and adds
      Gaussian noise before the reply leaves the client.

    Other actions (GPSE queries, unlearning) pass through untouched: they carry no
    model update of the stream.
    """
    if action_of(msg) != TRAIN:
        return call_next(msg, ctxt)
    dp = _dp_config(msg)
    if dp is None:
        return call_next(msg, ctxt)
    if dp.mode == "local":
        assert dp.epsilon is not None
        c = dp.clipping_norm
        return _model_records_only(LocalDpMod(c, c, dp.epsilon, dp.delta), msg, ctxt, call_next)
    if dp.clipping == "client":
        mod = adaptiveclipping_mod if dp.adaptive else fixedclipping_mod
        return _model_records_only(mod, msg, ctxt, call_next)
    return call_next(msg, ctxt)


def _model_records_only(mod: Any, msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Run a Flower DP mod that insists on one ArrayRecord / ConfigRecord each way.

    Strategy payloads (e.g. ``sum-*`` statistics, local-eval records) are held aside
    while the mod clips: the handler still sees them, and they are put back on the reply.
    """
    held_in = {k: msg.content[k] for k in list(msg.content.keys()) if k not in (keys.ARRAYS, keys.CONFIG)}
    for k in held_in:
        del msg.content[k]
    held_out: dict[str, Any] = {}

    def inner(m: Message, c: Context) -> Message:
        for k, v in held_in.items():
            m.content[k] = v
        out = call_next(m, c)
        for k in held_in:
            del m.content[k]
        if not out.has_error():
            for k in list(out.content.keys()):
                if k not in (keys.ARRAYS, keys.METRICS):
                    held_out[k] = out.content[k]
                    del out.content[k]
        return out

    out: Message = mod(msg, ctxt, inner)
    if not out.has_error():
        for k, v in held_out.items():
            out.content[k] = v
    return out


def privacy_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """The one mod of fedcl's ClientApp: SecAgg+ stages (around the DP mod), else the DP mod."""
    if is_secagg_message(msg):
        return secagg_client_mod(msg, ctxt, lambda m, c: dp_mod(m, c, call_next))
    return dp_mod(msg, ctxt, call_next)
