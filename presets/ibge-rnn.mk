# PRESET=ibge-rnn: the tanh-RNN counterpart of PRESET=ibge (~30k parameters), 5 minutes on 2 cores,
# built into artifacts/ibge-rnn/.
# Best RNN of the 2026-11-27 sweep (docs/results/sweep.md): 1.7828 nats/symbol at 120 s, 1 thread.
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
# no length-sorted batches: at 120 s on IBGE the GRU preset reached 1.7409 without them, 1.7480 /
# 1.7470 / 1.7522 with pools of 2 / 4 / 32 batches (docs/results/sweep-pools.md)
LENGTH_POOL     ?= 0
MAX_SECONDS     ?= 300
EPOCHS          ?= 100000
PATIENCE        ?= 0
VAL_FRACTION    ?= 0.1
SEED            ?= 0
THREADS         ?= 1
