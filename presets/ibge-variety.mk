# PRESET=ibge-variety: the GRU of PRESET=ibge trained on every distinct spelling equally
# (COUNT_WEIGHTING=none): the best validation NLL per name, and n-best lists of unusual spellings
# rather than common names; pick it for variety, PRESET=ibge for names people have. Builds into
# artifacts/ibge-variety/. Picked as the best GRU of the time-to-quality sweep (`make sweep`;
# docs/results/sweep.md).
# Every training knob is set here, so make and `make bench` (bench/presets.py) train the same thing.
ART             ?= artifacts/ibge-variety
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
