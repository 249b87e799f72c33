# CharRNN name generator: corpus -> training -> TorchScript/ONNX step exports.
# `make` runs the whole pipeline on the default corpus; `make test` runs the tests.
# Every target sets up .venv itself; make's own timestamps decide what is stale.

SHELL := /bin/bash
.DEFAULT_GOAL := all

PYTHON_BOOT ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
PYTEST_ARGS ?=

# ---- training knobs (docs/training.md) ----
# The defaults live in one place, TrainConfig in model/config.py (`python -m model.train --help`);
# PRESET=NAME picks presets/NAME.toml, plain overrides of them. make passes model.train only the
# knobs given on its command line or in the environment, so `make train` and `python -m model.train`
# train the same thing. Each knob and the model.train option it sets:
TRAIN_KNOBS := HIDDEN:hidden LAYERS:layers CELL:cell EPOCHS:epochs BATCH:batch-size LR:lr LR_DECAY:lr-decay \
	LR_SCHEDULE:lr-schedule PATIENCE:patience MAX_SECONDS:max-seconds COUNT_WEIGHTING:count-weighting \
	LENGTH_POOL:length-pool VAL_FRACTION:val-fraction THREADS:threads SEED:seed DEVICE:device \
	MEMBERS:members MEMBER_WEIGHTINGS:member-weightings TEACHER:teacher
# $(call given,VAR): VAR's value if the user set it (an empty value counts as not set)
given = $(if $(filter command line environment environment override,$(origin $1)),$(strip $($1)))

# What make itself needs from a preset (its ART folder, its corpus, its files) comes from the same
# reader model.train uses (model/config.py), run before anything is built; hence the system Python
# (3.11+, stdlib only) until the venv exists.
PRESET      ?=
PRESET_DIR  ?= presets
ifneq ($(PRESET),)
  PRESET_VARS := $(shell $(or $(wildcard $(VENV)/bin/python),$(PYTHON_BOOT)) -m model.config make-vars '$(PRESET)' --preset-dir '$(PRESET_DIR)')
  ifneq ($(.SHELLSTATUS),0)
    $(error PRESET=$(PRESET) cannot be used (the message above says why))
  endif
  ART           ?= $(word 1,$(PRESET_VARS))
  PRESET_CORPUS := $(filter-out -,$(word 2,$(PRESET_VARS)))
  PRESET_TEACHER := $(filter-out -,$(word 3,$(PRESET_VARS)))
  PRESET_FILES  := $(wordlist 4,$(words $(PRESET_VARS)),$(PRESET_VARS))
  ifneq ($(PRESET_CORPUS),)
    CORPUS      ?= $(PRESET_CORPUS)
  endif
endif
ART         ?= artifacts
# the preset's corpus (above), else the default corpus that `make data` builds into $(ART)
CORPUS      ?= $(ART)/corpus.txt

# --corpus when the user names one or make picked the default corpus (a preset's reaches model.train itself)
TRAIN_ARGS := $(strip $(if $(PRESET),--preset $(PRESET)) $(if $(call given,PRESET_DIR),--preset-dir $(PRESET_DIR)) \
	$(if $(or $(call given,CORPUS),$(if $(PRESET_CORPUS),,1)),--corpus $(CORPUS)) \
	$(foreach k,$(TRAIN_KNOBS),$(if $(call given,$(word 1,$(subst :, ,$k))),--$(word 2,$(subst :, ,$k)) $($(word 1,$(subst :, ,$k))))) \
	$(if $(call given,TITLE_CASE),$(if $(filter 1 yes true,$(TITLE_CASE)),--title-case,--no-title-case)))

STAMP       := $(VENV)/.installed
CHECKPOINT  := $(ART)/checkpoint.pt
EXPORTS     := $(ART)/vocab.json $(ART)/charrnn.torchscript.pt $(ART)/charrnn.onnx $(ART)/charrnn_generate.onnx
MODEL_CARD  := $(ART)/model_card.md
SOURCES_DATA  := $(wildcard core/*.py data/*.py)
CENSUS_DATA   := $(wildcard data/census/*.tsv)
SOURCES_MODEL := $(wildcard model/*.py)
SOURCES_EXPORT := $(wildcard export/*.py)
SOURCES_RUNTIME := $(wildcard runtime/*.py)
SOURCES_CARD := $(wildcard evaluation/*.py) tools/tables.py
# A corpus of the project (under data/) is documented by the README.md beside it, which the card quotes;
# the default corpus is built from data/census/ (its note $(ART)/corpus.txt.source says so).
CORPUS_PROVENANCE := $(wildcard $(dir $(filter data/%,$(CORPUS)))README.md) $(if $(filter $(ART)/corpus.txt,$(CORPUS)),data/census/README.md)

.PHONY: all setup data train export card verify generate names test lint clean distclean check-java FORCE

all: export archive

# ---- set-up: a venv with the exact pins of pyproject.toml ----
setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON_BOOT) >/dev/null || { echo "error: $(PYTHON_BOOT) not found (Python 3.11 is needed)"; exit 1; }
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# The Java TorchServe will run ($JAVA_HOME/bin/java if it is 17+, else java on PATH): serve.server.find_java.
# Without it the real-TorchServe tests skip, saying why; with CI=true they fail instead.
check-java: | $(STAMP)
	@$(PY) -m serve.server check-java >/dev/null \
	  || echo "warning: TorchServe (make serve, the real-TorchServe tests) needs Java 17+: those tests" \
	       "skip here, and fail when CI=true"

# ---- pipeline ----
data: $(CORPUS)

# The census names of data/census/, title-cased, accents restored (docs/training.md, "The default corpus")
$(ART)/corpus.txt: $(SOURCES_DATA) $(CENSUS_DATA) | $(STAMP)
	$(PY) -m data.build_default --out $@

# Re-train when any training knob changes, not only when a file does (the preset's files are
# prerequisites of the checkpoint themselves).
$(ART)/.train-args: FORCE
	@mkdir -p $(ART)
	@echo '$(TRAIN_ARGS)' | cmp -s - $@ || echo '$(TRAIN_ARGS)' > $@

train: $(CHECKPOINT)

# A distilled model (docs/training.md) retrains when its teacher's checkpoint changes. A teacher
# that is a preset's checkpoint (DIR/NAME/checkpoint.pt with presets/NAME.toml) is built first, as
# `make train PRESET=NAME ART=DIR/NAME` builds it: none of this make's knobs reach it (they are the
# student's), only where the tools and presets are.
TEACHER_CHECKPOINT := $(or $(call given,TEACHER),$(PRESET_TEACHER))
TEACHER_DIR    := $(patsubst %/,%,$(dir $(TEACHER_CHECKPOINT)))
TEACHER_PRESET := $(if $(and $(filter $(notdir $(CHECKPOINT)),$(notdir $(TEACHER_CHECKPOINT))),\
	$(wildcard $(PRESET_DIR)/$(notdir $(TEACHER_DIR)).toml)),$(notdir $(TEACHER_DIR)))

# ... so the student cannot take other names or another split than the teacher it waits for
ifneq ($(and $(TEACHER_PRESET),$(or $(call given,CORPUS),$(call given,TITLE_CASE),$(call given,VAL_FRACTION))),)
  $(error $(TEACHER_CHECKPOINT) is trained on PRESET=$(TEACHER_PRESET)'s names and split, which the model learning from it \
    must share: CORPUS, TITLE_CASE and VAL_FRACTION cannot change here (set them in presets of your own for both))
endif

$(CHECKPOINT): $(CORPUS) $(SOURCES_DATA) $(SOURCES_MODEL) $(PRESET_FILES) $(ART)/.train-args $(TEACHER_CHECKPOINT) | $(STAMP)
	$(PY) -m model.train $(TRAIN_ARGS) --out $@

ifneq ($(TEACHER_PRESET),)
$(TEACHER_CHECKPOINT): MAKEOVERRIDES =
$(TEACHER_CHECKPOINT): FORCE | $(STAMP)
	env $(foreach v,$(foreach k,$(TRAIN_KNOBS),$(word 1,$(subst :, ,$k))) CORPUS TITLE_CASE ART PRESET,-u $v) \
	  $(MAKE) --no-print-directory train PRESET=$(TEACHER_PRESET) ART=$(TEACHER_DIR) \
	  $(foreach v,PRESET_DIR VENV PYTHON_BOOT PY,$(if $(call given,$v),$v='$($v)'))
endif

export: $(EXPORTS)

$(EXPORTS) &: $(CHECKPOINT) $(SOURCES_EXPORT) | $(STAMP)
	$(PY) -m export --checkpoint $(CHECKPOINT) --out-dir $(ART)

# The model card (docs/training.md): built from the checkpoint and its evaluation on the validation
# split (no sampling, no plots), so plain `make` writes it for the archives and the web page to
# carry; `make eval` rewrites it from its full report (the same text for the same checkpoint).
card: $(MODEL_CARD)

$(MODEL_CARD): $(CHECKPOINT) $(CORPUS) $(CORPUS_PROVENANCE) $(SOURCES_CARD) $(SOURCES_DATA) $(SOURCES_MODEL) | $(STAMP)
	$(PY) -m evaluation.card --checkpoint $(CHECKPOINT) --out $@

# Do the artifacts in $(ART) load, and do they come from one training run?
verify: $(EXPORTS)
	$(PY) -m tools.verify --dir $(ART)

# make generate BACKEND=onnx PREFIX=L NUM=5 [TEMPERATURE=0.8 SEED=1]
BACKEND ?= eager
PREFIX  ?=
NUM     ?= 5
TEMPERATURE ?= 0
generate: $(EXPORTS)
	$(PY) -m tools.generate --backend $(BACKEND) --prefix '$(PREFIX)' -n $(NUM) --temperature $(TEMPERATURE) \
		$(if $(SEED_GEN),--seed $(SEED_GEN),)

# Bulk generation straight to a file (docs/bulk-generation.md); the same SEED gives the same file on CPU or GPU.
# make names NUM=1000000 OUT=names.txt [DEVICE=cuda] [TEMPERATURE=1 SEED=7 PREFIX=Ma TOP_K=0] [DISTINCT=1] [WORKERS=2]
# Uses $(ART)'s export as it is (built first only when missing); TEMPERATURE defaults to 1 here;
# WORKERS: CPU processes, one core each (default: the usable cores; the file does not depend on it).
OUT      ?= names.txt
TOP_K    ?= 0
DISTINCT ?=
WORKERS  ?=
NAMES_ARGS ?=
names: $(if $(wildcard $(ART)/charrnn.torchscript.pt),,$(EXPORTS)) | $(STAMP)
	$(PY) -m model.names --model $(ART)/charrnn.torchscript.pt --num $(NUM) --out '$(OUT)' $(if $(DEVICE),--device $(DEVICE)) \
		--prefix '$(PREFIX)' $(if $(SEED),--seed $(SEED)) --top-k $(TOP_K) $(if $(WORKERS),--workers $(WORKERS),) \
		--temperature $(if $(filter command line environment,$(origin TEMPERATURE)),$(TEMPERATURE),1) \
		$(if $(filter 1 yes true,$(DISTINCT)),--distinct,) $(NAMES_ARGS)

# ---- serving: TorchServe archives, server, GPU check (docs/serving.md, docs/gpu.md) ----
MODEL_STORE     ?= $(ART)/model_store
SERVE_DIR       ?= $(ART)/serve
INFERENCE_PORT  ?= 8080
MANAGEMENT_PORT ?= 8081
METRICS_PORT    ?= 8082
SERVE_TIMEOUT   ?= 120
ARCHIVES        := $(MODEL_STORE)/charrnn.mar $(MODEL_STORE)/charrnn_session.mar
SOURCES_SERVE   := serve/__init__.py serve/engine.py serve/validation.py serve/sessions.py serve/artifacts.py \
                   serve/wire.py serve/answers.py serve/handler.py serve/checksums.py serve/archive.py $(wildcard serve/config/*.yaml)

.PHONY: archive serve stop gpu-check require-java

archive: $(ARCHIVES)

$(ARCHIVES) &: $(EXPORTS) $(MODEL_CARD) $(SOURCES_SERVE) $(SOURCES_DATA) $(SOURCES_MODEL) $(SOURCES_EXPORT) $(SOURCES_RUNTIME) | $(STAMP)
	$(PY) -m serve.archive --torchscript $(ART)/charrnn.torchscript.pt --vocab $(ART)/vocab.json \
		--greedy-graph $(ART)/charrnn_generate.onnx --card $(MODEL_CARD) --out $(MODEL_STORE)

require-java: | $(STAMP)
	@$(PY) -m serve.server check-java >/dev/null

# Starts TorchServe in the background from $(SERVE_DIR) and returns once the workers are READY.
serve: require-java $(ARCHIVES)
	$(PY) -m serve.server start --dir $(SERVE_DIR) --model-store $(MODEL_STORE) --timeout $(SERVE_TIMEOUT) \
		--inference-port $(INFERENCE_PORT) --management-port $(MANAGEMENT_PORT) --metrics-port $(METRICS_PORT)

stop: | $(STAMP)
	$(PY) -m serve.server stop --dir $(SERVE_DIR)

# On a CUDA machine: GPU vs CPU names on every route and batched names/s (needs only PyTorch; skips
# without CUDA, writing no page) -> $(RESULTS_DIR)/gpu-check.md. A GPU machine may have its own
# Python and torch and no network to build the venv: without the venv this runs $(PYTHON_BOOT) as
# it is (and a random-weight model of the default size when $(ART) holds no export); tools/gpu_run.sh
# is the whole GPU run in one command. GPU_CHECK_ARGS: more options (`python -m tools.gpu_check --help`).
GPU_CHECK_ARGS ?=
gpu-check:
	$(if $(wildcard $(STAMP)),$(PY),$(PYTHON_BOOT)) -m tools.gpu_check --model $(ART)/charrnn.torchscript.pt --vocab $(ART)/vocab.json \
		--page $(RESULTS_DIR)/gpu-check.md $(GPU_CHECK_ARGS)

# ---- embedding: torch-free ONNX Runtime, the Node.js example, the runtime benchmark (docs/embedding.md) ----
NODE_DIR := export/node

.PHONY: node-setup node-generate bench-runtime

node-setup: $(NODE_DIR)/node_modules/.installed

# onnxruntime-node's postinstall downloads CUDA binaries (and fails offline); the CPU binary ships
# inside the package, so skip it both ways.
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found (the Node.js example needs Node.js 18+)"; exit 1; }
	cd $(NODE_DIR) && ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

# make node-generate PREFIX=L
node-generate: node-setup $(EXPORTS)
	node $(NODE_DIR)/generate.mjs --model $(ART)/charrnn.onnx '$(PREFIX)'

# Per-name latency (batch 1) and names/s (batch 256): eager, TorchScript, ORT step loop, one-graph loop.
bench-runtime: $(EXPORTS) | $(STAMP)
	$(PY) -m bench.runtime --art-dir $(ART) --page $(RESULTS_DIR)/bench-runtime.md

# ---- the browser page: onnxruntime-web in a static site (docs/web.md) ----
WEB_DIR     := web
WEB_OUT     ?= $(ART)/web
WEB_PORT    ?= 8000
SOURCES_WEB := $(WEB_DIR)/charrnn.mjs $(wildcard $(WEB_DIR)/site/*) $(WEB_DIR)/build.py
BENCH_WEB_ARGS ?=

.PHONY: web-setup web web-serve bench-web

# The pinned onnxruntime-web (web/package-lock.json); the site copies its wasm build (no CDN).
web-setup: $(WEB_DIR)/node_modules/.installed

$(WEB_DIR)/node_modules/.installed: $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found (the web page build needs Node.js 18+)"; exit 1; }
	cd $(WEB_DIR) && npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

# The page, its JavaScript, onnxruntime-web's files and the current models -> $(WEB_OUT)/
web: $(WEB_OUT)/site.json

$(WEB_OUT)/site.json: $(EXPORTS) $(MODEL_CARD) $(SOURCES_WEB) $(WEB_DIR)/node_modules/.installed | $(STAMP)
	$(PY) -m web.build --art-dir $(ART) --card $(MODEL_CARD) --out $(WEB_OUT)

# make web-serve [WEB_PORT=8000]: serves $(WEB_OUT) on 127.0.0.1 until Ctrl-C
web-serve: web
	$(PY) -m web.serve --dir $(WEB_OUT) --port $(WEB_PORT)

# First suggestion after page load and per-keystroke updates in headless Chromium, next to
# Node.js and Python ONNX Runtime doing the same work -> $(ART)/bench/web.{json,md}
bench-web: web node-setup | $(STAMP)
	$(PY) -m bench.web --art-dir $(ART) --site $(WEB_OUT) --out-dir $(ART)/bench --page $(RESULTS_DIR)/bench-web.md \
		$(BENCH_WEB_ARGS)

# built in a temporary folder and swapped in: make must not delete the stamp on an interrupt
.PRECIOUS: $(WEB_OUT)/site.json

# ---- evaluation and benchmarks (docs/results.md) ----
.PHONY: eval bench bench-serving sweep

# Each measuring command also writes its stamped result page here (docs/results.md lists them);
# RESULTS_DIR=/tmp/results keeps docs/ clean.
RESULTS_DIR ?= docs/results

# Model-quality report of $(CHECKPOINT) (retrained first if a knob changed) -> $(ART)/report/, and
# the model card $(MODEL_CARD) from the same figures (rewritten only if its text changed)
# make eval CORPUS=my_names.txt   (retrains $(ART) on that corpus)
# make eval PRESET=ibge           (the GRU distilled from the ensemble, beside it and its members: artifacts/ibge/)
EVAL_SEED ?= 0
eval: $(CHECKPOINT) | $(STAMP)
	$(PY) -m evaluation --checkpoint $(CHECKPOINT) --out-dir $(ART)/report --seed $(EVAL_SEED) \
		--page $(RESULTS_DIR)/eval-$(or $(PRESET),default).md --card $(MODEL_CARD)

# make bench [SECTIONS=training,quality,generation,bulk,serving,sessions] [BENCH_ARGS=...] -> $(ART)/bench/bench.{json,md}
SECTIONS   ?= training,quality,generation,bulk,serving,sessions
BENCH_ARGS ?=
comma      := ,
bench: $(EXPORTS) $(if $(filter serving sessions,$(subst $(comma), ,$(SECTIONS))),$(ARCHIVES)) | $(STAMP)
	$(PY) -m bench --sections $(SECTIONS) --art-dir $(ART) --out-dir $(ART)/bench --results-dir $(RESULTS_DIR) $(BENCH_ARGS)

# The Serving sections alone (needs Java 17 and wrk): a TorchServe of its own on free loopback ports
# with $(MODEL_STORE)'s charrnn.mar beside a do-nothing handler (bench/serving.py), then thousands of
# typists on the session model (bench/sessions.py), each on a TorchServe of its own
# -> $(ART)/bench/bench.{json,md}, $(RESULTS_DIR)/bench-serving.md and bench-sessions.md
# make bench-serving SERVING_ARGS="--serving-repeats 5 --serving-seconds 10 --serving-sweep none"
# make bench-serving SERVING_SECTIONS=sessions SERVING_ARGS="--sessions-rows 1000:corpus,3000:corpus"
SERVING_ARGS ?=
SERVING_SECTIONS ?= serving,sessions
.PHONY: require-wrk
require-wrk:
	@command -v wrk >/dev/null || { echo "error: make bench-serving drives TorchServe with wrk:" \
	  "install it (Debian/Ubuntu: apt-get install -y wrk)"; exit 1; }

bench-serving: require-java require-wrk $(ARCHIVES) | $(STAMP)
	$(PY) -m bench --sections $(SERVING_SECTIONS) --art-dir $(ART) --out-dir $(ART)/bench --results-dir $(RESULTS_DIR) \
		--serving-model-store $(MODEL_STORE) \
		$(SERVING_ARGS)

# Time-to-quality sweep on $(CORPUS), the census names by default (every configuration of
# bench/sweep.py, each to its last milestone: long) -> $(ART)/bench/sweep.{json,md}
SWEEP_ARGS ?=
sweep: $(CORPUS) | $(STAMP)
	$(PY) -m bench.sweep --corpus $(CORPUS) --out-dir $(ART)/bench --page $(RESULTS_DIR)/sweep.md $(SWEEP_ARGS)

# ---- reliability (docs/reliability.md) ----
.PHONY: soak

# Every artifact is written atomically (temporary file + rename), so an interrupted recipe leaves
# the previous file in place; make itself would delete it on SIGINT/SIGTERM (an interrupted
# export would lose charrnn.torchscript.pt and both ONNX files). Keep them.
.PRECIOUS: $(CORPUS) $(CHECKPOINT) $(EXPORTS) $(MODEL_CARD) $(ARCHIVES)

# Fuzzing, session cap and churn, a killed worker, a restart, corrupted artifacts and an
# interrupted make, against a real TorchServe -> $(ART)/soak/summary.{json,md}
SOAK_ARGS ?=
soak: require-java $(ARCHIVES) | $(STAMP)
	$(PY) -m soak --art-dir $(ART) --page $(RESULTS_DIR)/soak.md $(SOAK_ARGS)

# ---- deployment: container images, Kubernetes, a cluster on this machine (docs/deploy.md) ----
.PHONY: cluster-test deploy-render image-cpu image-gpu push-images require-haproxy

# The images (deploy/Dockerfile.cpu, .gpu), built from the repository root with the archives of
# $(MODEL_STORE) inside: make image-cpu IMAGE=registry.example.com/charrnn TAG=0.1.0
IMAGE  ?= charrnn
TAG    ?= 0.1.0
DOCKER ?= docker
image-cpu: $(ARCHIVES)
	$(DOCKER) build -f deploy/Dockerfile.cpu --build-arg MODEL_STORE=$(MODEL_STORE) -t $(IMAGE):cpu-$(TAG) .

image-gpu: $(ARCHIVES)
	$(DOCKER) build -f deploy/Dockerfile.gpu --build-arg MODEL_STORE=$(MODEL_STORE) -t $(IMAGE):gpu-$(TAG) .

push-images:
	$(DOCKER) push $(IMAGE):cpu-$(TAG)
	$(DOCKER) push $(IMAGE):gpu-$(TAG)

# The Kubernetes gateway's haproxy.cfg, rendered from the template make cluster-test also uses
deploy-render: | $(STAMP)
	$(PY) -m deploy.gateway render-k8s

require-haproxy:
	@command -v haproxy >/dev/null || test -x /usr/sbin/haproxy \
	  || { echo "error: make cluster-test needs HAProxy (Debian: apt-get install -y haproxy)"; exit 1; }

# Three TorchServe replicas behind HAProxy on loopback, under load, one SIGKILLed and restarted,
# the token rotated -> $(RESULTS_DIR)/cluster-test.md. CLUSTER_ARGS: python -m deploy.cluster_test --help
CLUSTER_ARGS ?=
cluster-test: require-java require-haproxy $(ARCHIVES) | $(STAMP)
	$(PY) -m deploy.cluster_test --model-store $(MODEL_STORE) --page $(RESULTS_DIR)/cluster-test.md $(CLUSTER_ARGS)

# ---- quality ----
test: $(STAMP) check-java
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(ART)

distclean: clean
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
