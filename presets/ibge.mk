# PRESET=ibge: a ~26k-parameter GRU on the IBGE census names, 5 minutes on 2 cores.
# `make train PRESET=ibge` (or eval, export, ...) builds into artifacts/ibge/; any VAR=value on the
# command line still wins. Chosen from the time-to-quality sweep (`make sweep`, README "Results");
# PROVISIONAL until the full 300 s sweep has run: picked from a 15-30 s, 1-thread screen.
# Every training knob is set here, so make and `make bench` (bench/presets.py) train the same thing.
ART             ?= artifacts/ibge
CORPUS          ?= ../shared/data/ibge_names_train.tsv
TITLE_CASE      ?= 1
CELL            ?= gru
HIDDEN          ?= 64
LAYERS          ?= 1
BATCH           ?= 64
LR              ?= 0.01
LR_SCHEDULE     ?= cosine
LR_DECAY        ?= 1.0
COUNT_WEIGHTING ?= none
MAX_SECONDS     ?= 300
EPOCHS          ?= 100000
PATIENCE        ?= 0
VAL_FRACTION    ?= 0.1
SEED            ?= 0
THREADS         ?= 2
