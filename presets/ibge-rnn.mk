# PRESET=ibge-rnn: the tanh-RNN counterpart of PRESET=ibge (~30k parameters), 5 minutes of training,
# built into artifacts/ibge-rnn/.
# Picked as the best RNN of the time-to-quality sweep (`make sweep`; its table: docs/results/sweep.md).
ART             ?= artifacts/ibge-rnn
CORPUS          ?= ../shared/data/ibge_names_train.tsv
TITLE_CASE      ?= 1
CELL            ?= rnn
HIDDEN          ?= 128
LAYERS          ?= 1
BATCH           ?= 64
LR              ?= 0.003
LR_SCHEDULE     ?= cosine
LR_DECAY        ?= 1.0
COUNT_WEIGHTING ?= none
# no length-sorted batches: they did not pay on this corpus (`make sweep`; docs/results/sweep-pools.md)
LENGTH_POOL     ?= 0
MAX_SECONDS     ?= 300
EPOCHS          ?= 100000
PATIENCE        ?= 0
VAL_FRACTION    ?= 0.1
SEED            ?= 0
THREADS         ?= 1
