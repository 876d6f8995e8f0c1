"""The ``train`` handler: one local continual-learning round of one logical client."""

from __future__ import annotations

import time

import torch
from flwr.app import Context, Message, MetricRecord, RecordDict

import fedcl.keys as keys
import fedcl.local_eval as local_eval
import fedcl.sums as sums
from fedcl.client.instruction import Instruction, Workspace, workspace
from fedcl.faults import FaultPlan
from fedcl.fot import client as gpse
from fedcl.methods import CLMethod, TaskContext, build_method
from fedcl.methods.base import state_nbytes
from fedcl.records import model_record
from fedcl.seeding import torch_generator
from fedcl.state import open_store
from fedcl.trainer import TrainConfig, train_local
from fedcl.unlearning import protocol as unlearn
from fedcl.unlearning.data import Exclusions, sample_rows


def handle(msg: Message, context: Context, instr: Instruction) -> Message:
    """Restore the client's method state, train E local epochs with the method's hooks, reply, save the state."""
    t0 = time.perf_counter()
    cfg = instr.cfg
    # faults= config group: a deterministic crash / delay / NaN reply for tests and drills (fedcl/faults.py)
    faults = FaultPlan.draw(cfg.faults, cfg.seed, instr.server_round, instr.client_id, int(instr.get(keys.ATTEMPT, 0)))
    faults.before_train(instr.client_id, instr.server_round)
    ws = workspace(instr, msg)
    store = open_store(cfg.federation.state_store, context, instr.get(keys.STATE_DIR), cfg.federation.state_memory_mb)
    saved = store.load(instr.client_id)
    method = build_method(cfg.method)
    method.load_state_dict(saved.get("method", {}))
    forget = instr.forget_classes
    if forget:
        # samples of a forgotten class stored before the request must not be replayed either
        method.forget_classes(forget)
    excl = unlearn.exclusions(instr)
    if excl.samples.get(instr.client_id):  # the same for forgotten samples (sample-level requests)
        method.forget_samples(sample_rows(ws.stream, excl.samples, instr.client_id))
    seen: list[int] = list(saved.get("seen_tasks", []))
    new_task = instr.task_id not in seen
    if new_task:
        seen.append(instr.task_id)
    ctx = task_context(msg, instr, ws, seen, excl)
    if new_task:
        method.before_task(ctx)
    result = train_local(method, ctx, TrainConfig(
        lr=float(instr.record[keys.LR]), local_epochs=int(instr.record[keys.LOCAL_EPOCHS]),  # type: ignore[arg-type]
        batch_size=cfg.train.batch_size, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay,
        proximal_mu=float(instr.get(keys.PROXIMAL_MU, 0.0)),
    ))
    if ctx.last_round_of_task:
        method.after_task(ctx)
    method_state = method.state_dict()
    store.save(instr.client_id, {"method": method_state, "seen_tasks": seen, "last_round": instr.server_round})
    content = _reply(instr, ws, ctx, method, method_state, result.num_examples, result.loss, result.acc, t0, seen)
    # FOT's official GPSE (strategy.gpse_model=local): the sketches of the trained model ride on the reply
    for name, rec in gpse.train_records(msg, instr, ws.model, ctx.x, ctx.last_round_of_task).items():
        content[name] = rec
    return Message(content=faults.after_train(content), reply_to=msg)


def task_context(msg: Message, instr: Instruction, ws: Workspace, seen: list[int], excl: Exclusions) -> TaskContext:
    """What the method's hooks may read this round (the client's data without held-out and forgotten samples)."""
    stream, device, client, rnd = ws.stream, ws.device, instr.client_id, instr.server_round

    def data(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        # stream.augment crops / flips what the client trains on, seeded by (seed, client, round, task);
        # it keeps the rows in place, so the exclusions' sample positions still apply
        x, y = stream.train_data(t, client, rnd)
        x, y, _ = excl.training_data(x.to(device), y.to(device), t, client)
        return x, y

    x, y = data(instr.task_id)
    return TaskContext(
        model=ws.model, task_id=instr.task_id, client_id=client, server_round=instr.server_round,
        task_round=int(instr.record[keys.TASK_ROUND]),  # type: ignore[arg-type]
        last_round_of_task=bool(instr.record[keys.LAST_ROUND_OF_TASK]), x=x, y=y, device=device,
        num_classes=stream.num_classes, task_classes=list(stream.tasks[instr.task_id].classes), seen_tasks=seen,
        global_params={k: v.detach().clone() for k, v in ws.model.named_parameters()},
        generator=torch_generator(instr.seed, "batches", client, instr.server_round),
        multi_head=stream.multi_head,
        payload={k: v for k, v in msg.content.items() if k not in (keys.ARRAYS, keys.CONFIG)},
        task_data=data,
        classes_of=lambda t: list(stream.tasks[t].classes),
    )


def _reply(instr: Instruction, ws: Workspace, ctx: TaskContext, method: CLMethod, method_state: dict[str, object],
           n: int, loss: float, acc: float, t0: float, seen: list[int]) -> RecordDict:
    """The train reply: weights, metrics, and the optional records (local evaluation, sums, client id)."""
    content = RecordDict({
        keys.ARRAYS: model_record(ws.model),
        keys.METRICS: MetricRecord({
            keys.NUM_EXAMPLES: int(n), keys.TRAIN_LOSS: float(loss), keys.TRAIN_ACC: float(acc),
            keys.STATE_BYTES: int(state_nbytes(method_state)), keys.TRAIN_SECONDS: float(time.perf_counter() - t0),
            **{k: float(v) for k, v in ctx.metrics.items()},
        }),
    })
    if instr.cfg.eval.local_forgetting:  # own model on own tasks, before averaging
        content[local_eval.RECORD] = local_eval.local_eval_record(ws.model, ws.stream, seen, instr.client_id,
                                                                  instr.cfg.eval, ws.device)
    if instr.get(unlearn.REPORT_CLIENT_ID):  # FedEraser keeps individual updates: it must know whose they are
        content[unlearn.INFO] = unlearn.client_info(instr.client_id)
    for name, rec in sums.outbox_records(ctx.outbox).items():  # summed over clients by the server (FCLFedAvg)
        content[name] = rec
    return content
