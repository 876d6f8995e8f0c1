"""Every message and record key, defined once (hyphenated like Flower's)."""

# RecordDict entries
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
FOT_BASES = "fot-bases"  # server -> client: orthonormal bases per projected layer
FOT_SKETCH = "fot-sketch"  # client -> server: GPSE sketches Y_i per layer
FOT_STATS = "fot-stats"  # client -> server: ratios r_i * n_i per layer
LOCAL_EVAL = "local-eval"  # client -> server MetricRecord: own model's accuracy on its tasks (local forgetting)
# client -> server: "sum-<name>" ArrayRecords are summed over the round's replies by FCLFedAvg and
# sent back to every client next round under the same name (FedCurv's Fisher sums)
SUM_PREFIX = "sum-"
SUMS_META = "sums-meta"  # server -> client ConfigRecord: round the sums came from and how many clients
SUMS_ROUND = "round"
SUMS_CLIENTS = "clients"

# ConfigRecord keys (server -> client)
SERVER_ROUND = "server-round"
CLIENT_ID = "client-id"
TASK_ID = "task-id"
TASK_ROUND = "task-round"  # 0-based round index inside the current task
LR = "lr"
LOCAL_EPOCHS = "local-epochs"
PROXIMAL_MU = "proximal-mu"
RUN_CONFIG_JSON = "fedcl-config"  # resolved experiment config (JSON) the client derives its data from
STATE_DIR = "state-dir"
ATTEMPT = "attempt"  # 0 for a round's first try, k for its k-th retry (fault injection draws anew)
GPSE = "gpse"  # query action: clients answer FOT's GPSE (message type "query.gpse")

# MetricRecord keys (client -> server)
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
TRAIN_ACC = "train-acc"
TRAIN_SECONDS = "train-seconds"
STATE_BYTES = "state-bytes"
LAST_ROUND_OF_TASK = "last-round-of-task"

# Unlearning (fedcl/unlearning, strategies/unlearning.py)
UNLEARN = "unlearn"  # query action: clients answer unlearning queries (message type "query.unlearn")
FORGET_CLASSES = "forget-classes"  # server -> client: classes dropped from every client's data (list[int])
REPORT_CLIENT_ID = "report-client-id"  # server -> client: add UNLEARN_INFO to the train reply (FedEraser)
UNLEARN_INFO = "unlearn-info"  # client -> server: ConfigRecord with the logical client id
UNLEARN_OPTIONS = "unlearn-options"  # server -> client: the query's options (JSON string)
FISHER_FORGET = "fisher-forget"  # client -> server: sum of squared per-sample gradients on forget data
FISHER_RETAIN = "fisher-retain"  # client -> server: the same on retain data
NUM_FORGET = "num-forget"
NUM_RETAIN = "num-retain"

# Deployment: the ClientApp's "query.node_info" answer and the SuperNode's node-config keys
NODE_INFO = "node_info"  # query action ("query.node_info"; Flower wants a Python name) answered with the partition
PARTITION_ID = "partition-id"  # Flower's conventional node-config keys (its simulation sets them too)
NUM_PARTITIONS = "num-partitions"
DATA_DIR = "data-dir"
BIND_PARTITION = "bind-partition"  # node config: refuse to play any logical client but partition-id
