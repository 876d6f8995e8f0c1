"""The Flower ClientApp: one dispatcher from a message's action to its handler, wrapped by the privacy mods.

Imports flow one way: the app -> the mods (SecAgg+, DP) and the handlers -> the
instruction (:mod:`fedcl.client.instruction`). A mod never imports a handler: under
SecAgg+ the original action travels in the message (``keys.ACTION``) and this
dispatcher picks the handler.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

import fedcl.keys as keys
import fedcl.packages  # noqa: F401 - before any other project module: the packages in one order
from fedcl.analytic import client as analytic
from fedcl.analytic.messages import ANALYTIC, ANALYTIC_TYPE
from fedcl.client import train
from fedcl.client.instruction import TRAIN, Instruction, action_of, parse
from fedcl.fot import client as gpse
from fedcl.fot.protocol import GPSE, GPSE_TYPE
from fedcl.nodes import NODE_INFO_TYPE, node_info_reply
from fedcl.privacy.client_mod import privacy_mod
from fedcl.unlearning import client as unlearning
from fedcl.unlearning.protocol import UNLEARN, UNLEARN_TYPE

Handler = Callable[[Message, Context, Instruction], Message]
HANDLERS: dict[str, Handler] = {
    TRAIN: train.handle,
    GPSE_TYPE: gpse.handle,
    UNLEARN_TYPE: unlearning.handle,
    ANALYTIC_TYPE: analytic.handle,
}


def dispatch(msg: Message, context: Context) -> Message:
    """Parse the message's instruction once and call the handler of its action."""
    action = action_of(msg)
    if action not in HANDLERS:
        raise ValueError(f"fedcl's ClientApp has no handler for action {action!r}; known: {sorted(HANDLERS)}")
    return HANDLERS[action](msg, context, parse(msg, context))


app = ClientApp(mods=[privacy_mod])


@app.train()
def _train(msg: Message, context: Context) -> Message:
    return dispatch(msg, context)


@app.query(GPSE)
def _gpse(msg: Message, context: Context) -> Message:
    return dispatch(msg, context)


@app.query(UNLEARN)
def _unlearn(msg: Message, context: Context) -> Message:
    return dispatch(msg, context)


@app.query(ANALYTIC)
def _analytic(msg: Message, context: Context) -> Message:
    return dispatch(msg, context)


@app.query(keys.NODE_INFO)
def _node_info(msg: Message, context: Context) -> Message:
    # carries no run config: answered from the node's own config
    assert msg.metadata.message_type == NODE_INFO_TYPE
    return node_info_reply(msg, context)
