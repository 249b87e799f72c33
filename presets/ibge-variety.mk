# PRESET=ibge-variety: the GRU of PRESET=ibge trained on every distinct spelling equally
# (COUNT_WEIGHTING=none): the best validation NLL per name, and n-best lists of unusual spellings
# rather than common names; pick it for variety, PRESET=ibge for names people have.
# Builds into artifacts/ibge-variety/. The values below win; every other knob is PRESET=ibge's.
ART             ?= artifacts/ibge-variety
COUNT_WEIGHTING ?= none
include presets/ibge.mk
