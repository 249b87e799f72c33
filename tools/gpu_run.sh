#!/usr/bin/env bash
# The first GPU run (issue 22) as one command for one device call (docs/gpu.md): `make gpu-check`
# from a plain checkout with the machine's own Python and torch (no venv, no network, no Java),
# then, if time is left, `make names NUM=10000000 DEVICE=cuda`. Everything it finds goes under
# $OUT: machine.txt, gpu-check.log, results/gpu-check.md (the result page), names.log and
# names-summary.txt (the 10,000,000-line file itself stays on the machine: too large to return).
#
#   OUT=/some/folder bash tools/gpu_run.sh
#
# Environment: OUT (required: on a device call it is set, and comes back), PYTHON (default
# python3), ART (default artifacts: carry charrnn.torchscript.pt and vocab.json there for the
# trained model; without them gpu-check scripts a random-weight model of the default size and
# the names step is skipped), BUDGET_S (the whole script, default 540 s: under a device call's
# 600), NAMES_NUM (default 10000000), GPU_RUN_DRY=1 (no CUDA needed: gpu-check's dry run at small
# sizes and 2,000 names on the CPU, which is how tests/test_gpu_check.py runs this script).
# Exit status: gpu-check's.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that receives the results}"
PYTHON=${PYTHON:-python3}
ART=${ART:-artifacts}
BUDGET_S=${BUDGET_S:-540}
NAMES_NUM=${NAMES_NUM:-10000000}
DRY=${GPU_RUN_DRY:-}
mkdir -p "$OUT/results"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
left() { echo $((BUDGET_S - (SECONDS - START))); }

{
  date -u
  uname -a
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  "$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__,
"| CUDA build", torch.version.cuda, "| CUDA available", torch.cuda.is_available())'
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# run LABEL SECONDS COMMAND...: at most SECONDS, its output on stdout and in $OUT/LABEL.log
run() {
  local label=$1 limit=$2 rc
  shift 2
  echo "== $label (at most $limit s): $*" | tee "$OUT/$label.log"
  timeout --signal=INT --kill-after=20 "$limit" "$@" 2>&1 | tee -a "$OUT/$label.log"
  rc=${PIPESTATUS[0]}
  echo "== $label: exit status $rc after $((SECONDS - START)) s in all" | tee -a "$OUT/$label.log"
  return "$rc"
}

# The machine's Python stands in for the venv that make would otherwise build (pip, network):
# a venv folder whose python runs it and whose stamp says it is set up.
PY_PATH=$(command -v "$PYTHON") || { echo "error: $PYTHON not found" >&2; exit 2; }
mkdir -p "$WORK/venv/bin"
printf '#!/bin/sh\nexec %q "$@"\n' "$PY_PATH" >"$WORK/venv/bin/python"
chmod +x "$WORK/venv/bin/python"
touch "$WORK/venv/.installed"
MAKE_VARS=(VENV="$WORK/venv" ART="$ART" RESULTS_DIR="$OUT/results")
CHECK_ARGS=
[ -n "$DRY" ] && CHECK_ARGS="--dry-run-on-cpu --seconds 0.05 --decoder-rows 1,8 --engine-requests 1,8 --bulk 500"
HAVE_MAKE=$(command -v make || true)

if [ -n "$HAVE_MAKE" ]; then
  run gpu-check $(($(left) - 60)) make gpu-check "${MAKE_VARS[@]}" GPU_CHECK_ARGS="$CHECK_ARGS"
else  # what the recipe runs
  # shellcheck disable=SC2086
  run gpu-check $(($(left) - 60)) "$PYTHON" -m tools.gpu_check --model "$ART/charrnn.torchscript.pt" \
    --vocab "$ART/vocab.json" --page "$OUT/results/gpu-check.md" $CHECK_ARGS
fi
STATUS=$?

DEVICE=cuda NUM=$NAMES_NUM
[ -n "$DRY" ] && DEVICE=cpu NUM=2000
if [ -z "$DRY" ] && ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "names: skipped: CUDA is not available here" | tee "$OUT/names.log"
elif [ ! -f "$ART/charrnn.torchscript.pt" ]; then
  echo "names: skipped: no export in $ART (carry $ART/charrnn.torchscript.pt and vocab.json)" | tee "$OUT/names.log"
elif [ "$(left)" -lt 90 ]; then
  echo "names: skipped: $(left) s left" | tee "$OUT/names.log"
else
  if [ -n "$HAVE_MAKE" ]; then  # OUT= on the command line: make would take the device call's $OUT as the file
    run names $(($(left) - 15)) make names "${MAKE_VARS[@]}" NUM="$NUM" DEVICE="$DEVICE" SEED=7 OUT="$WORK/names.txt" \
      WORKERS=1 NAMES_ARGS=--no-progress
  else
    run names $(($(left) - 15)) "$PYTHON" -m model.names --model "$ART/charrnn.torchscript.pt" --num "$NUM" \
      --out "$WORK/names.txt" --device "$DEVICE" --seed 7 --workers 1 --no-progress
  fi && {
    echo "lines: $(wc -l <"$WORK/names.txt")"
    echo "sha256: $(sha256sum "$WORK/names.txt" | cut -d' ' -f1)"
    echo "first 20 lines:"
    head -n 20 "$WORK/names.txt"
  } >"$OUT/names-summary.txt"
fi
exit "$STATUS"
