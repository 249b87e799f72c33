# PRESET=ibge: a ~49k-parameter GRU on the IBGE census names, 5 minutes of training.
# `make train PRESET=ibge` (or eval, export, ...) builds into artifacts/ibge/; any VAR=value on the
# command line still wins.
# Picked as the best GRU of the time-to-quality sweep (`make sweep`; its table: docs/results/sweep.md).
# Every training knob is set here, so make and `make bench` (bench/presets.py) train the same thing.
ART             ?= artifacts/ibge
CORPUS          ?= ../shared/data/ibge_names_train.tsv
TITLE_CASE      ?= 1
CELL            ?= gru
HIDDEN          ?= 96
LAYERS          ?= 1
BATCH           ?= 64
LR              ?= 0.01
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
