#!/bin/sh
# The replica image's install steps: deploy/Dockerfile.cpu and Dockerfile.gpu RUN this file and
# nothing else (tests/test_deploy.py checks it), and CI runs its Python step too (with --dry-run,
# into a fresh venv: tests/test_deploy.py).
#
#   install.sh system                       Java 17 (TorchServe's frontend), the non-root user and
#                                           its folders (Debian; run as root)
#   install.sh python VENV cpu|cuda [--dry-run]
#                                           a venv with the serving packages at the exact pins of
#                                           pyproject.toml (deploy/requirements.py lists them):
#                                           torch's CPU build (cpu) or PyPI's CUDA build (cuda)
# TORCH_INDEX_URL overrides where the cpu flavour's torch comes from (set and empty: pip's own
# configuration, e.g. a local wheel).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"

case "${1:-}" in
  system)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends openjdk-17-jre-headless
    rm -rf /var/lib/apt/lists/*
    groupadd --system --gid 10001 charrnn
    useradd --system --uid 10001 --gid charrnn --home-dir /srv/charrnn --no-create-home \
      --shell /usr/sbin/nologin charrnn
    mkdir -p /srv/charrnn/run /srv/charrnn/model_store
    chown charrnn:charrnn /srv/charrnn/run
    ;;
  python)
    venv="${2:?install.sh python VENV cpu|cuda [--dry-run]}"
    flavour="${3:?install.sh python VENV cpu|cuda [--dry-run]}"
    dry="${4:-}"
    case "$flavour" in
      cpu) index="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}" ;;
      cuda) index="" ;;  # PyPI's torch wheel for Linux is the CUDA build, its CUDA libraries as pinned wheels
      *) echo "install.sh: flavour must be cpu or cuda, not '$flavour'" >&2; exit 2 ;;
    esac
    case "$dry" in ""|--dry-run) ;; *) echo "install.sh: unknown option '$dry'" >&2; exit 2 ;; esac
    python3 -m venv "$venv"
    pip="$venv/bin/python -m pip --no-cache-dir --disable-pip-version-check"
    # torch first, from its own index: the rest then finds it installed and takes nothing else
    # shellcheck disable=SC2086
    $pip install $dry ${index:+--index-url "$index"} "$(python3 "$here/requirements.py" --only torch)"
    # shellcheck disable=SC2086
    $pip install $dry $(python3 "$here/requirements.py" --except torch)
    ;;
  *)
    echo "usage: install.sh system | install.sh python VENV cpu|cuda [--dry-run]" >&2
    exit 2
    ;;
esac
