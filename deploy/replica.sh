#!/bin/sh
# The replica image's start step, and its probes: `replica.sh run` (the ENTRYPOINT), `replica.sh
# ready` (readiness), `replica.sh ping` (HEALTHCHECK). make cluster-test starts its replicas
# through this same file. Options and CHARRNN_* variables: python -m deploy.replica --help.
# CHARRNN_PYTHON: the interpreter (default: python on PATH, the image's venv).
set -eu
cd "$(dirname "$0")/.."
exec "${CHARRNN_PYTHON:-python}" -m deploy.replica "$@"
