"""The core message keys of every round, defined once (hyphenated like Flower's).

A feature's own keys live with its message contract: FOT's GPSE in
:mod:`fedcl.fot.protocol`, unlearning in :mod:`fedcl.unlearning.protocol`, FedCurv's
sums in :mod:`fedcl.sums`, local evaluation in :mod:`fedcl.local_eval`, SecAgg+'s
layout in :mod:`fedcl.privacy.secagg_protocol`.
"""

# RecordDict entries
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"

# ConfigRecord keys (server -> client)
SERVER_ROUND = "server-round"
CLIENT_ID = "client-id"
TASK_ID = "task-id"
TASK_ROUND = "task-round"  # 0-based round index inside the current task
LAST_ROUND_OF_TASK = "last-round-of-task"
LR = "lr"
LOCAL_EPOCHS = "local-epochs"
PROXIMAL_MU = "proximal-mu"
RUN_CONFIG_JSON = "fedcl-config"  # resolved experiment config (JSON) the client derives its data from
STATE_DIR = "state-dir"
ATTEMPT = "attempt"  # 0 for a round's first try, k for its k-th retry (fault injection draws anew)
FORGET_CLASSES = "forget-classes"  # classes of served deletion requests, dropped from every client's data
ACTION = "fedcl-action"  # the message's own type when a protocol (SecAgg+) carries it as another type

# MetricRecord keys (client -> server)
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
TRAIN_ACC = "train-acc"
TRAIN_SECONDS = "train-seconds"
STATE_BYTES = "state-bytes"

# Deployment: the SuperNode's node-config keys and the "query.node_info" action (fedcl/nodes.py)
NODE_INFO = "node_info"  # query action ("query.node_info"; Flower wants a Python name) answered with the partition
PARTITION_ID = "partition-id"  # Flower's conventional node-config keys (its simulation sets them too)
NUM_PARTITIONS = "num-partitions"
DATA_DIR = "data-dir"
BIND_PARTITION = "bind-partition"  # node config: refuse to play any logical client but partition-id
