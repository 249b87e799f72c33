# PRESET=ibge: a ~49k-parameter GRU on the IBGE census names, 5 minutes of training: names as
# people have them. `make train PRESET=ibge` (or eval, export, ...) builds into artifacts/ibge/; any
# VAR=value on the command line still wins.
# The GRU of the time-to-quality sweep (`make sweep`; docs/results/sweep.md), with names drawn by
# the square root of their census count: the best validation NLL per person (count-weighted) of
# none / log / sqrt in `make eval`, and n-best lists led by the commonest names (docs/nbest.md).
# PRESET=ibge-variety is the same model trained on every spelling equally (best NLL per name).
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
COUNT_WEIGHTING ?= sqrt
# no length-sorted batches: they did not pay on this corpus (`make sweep`; docs/results/sweep-pools.md)
LENGTH_POOL     ?= 0
MAX_SECONDS     ?= 300
EPOCHS          ?= 100000
PATIENCE        ?= 0
VAL_FRACTION    ?= 0.1
SEED            ?= 0
THREADS         ?= 1
