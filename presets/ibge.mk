# PRESET=ibge: a ~49k-parameter GRU on the IBGE census names, 5 minutes of training.
# `make train PRESET=ibge` (or eval, export, ...) builds into artifacts/ibge/; any VAR=value on the
# command line still wins.
# Picked from the 2026-11-27 sweep (10 configurations x 120 s, 1 thread; docs/results/sweep.md):
# GRU 96 reached 1.7475 nats/symbol at 120 s, the best of the sweep (GRU 64: 1.7719, bigram: 2.2841).
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
# no length-sorted batches: at 120 s on IBGE the GRU preset reached 1.7409 without them, 1.7480 /
# 1.7470 / 1.7522 with pools of 2 / 4 / 32 batches (docs/results/sweep-pools.md)
LENGTH_POOL     ?= 0
MAX_SECONDS     ?= 300
EPOCHS          ?= 100000
PATIENCE        ?= 0
VAL_FRACTION    ?= 0.1
SEED            ?= 0
THREADS         ?= 1
