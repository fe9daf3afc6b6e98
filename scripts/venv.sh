#!/usr/bin/env bash
# Creates the project's virtual environment `.venv` and installs confscope into it.
#   bash scripts/venv.sh            # confscope and its run-time dependencies
#   bash scripts/venv.sh test       # editable, with the test extras (used by install-test-deps.sh)
# Why a venv: Debian 12's system Python refuses `pip install` outside one (PEP 668,
# "externally-managed-environment"), and a venv keeps confscope's pins away from the system's.
# Debian ships the venv module's pip bootstrap separately (python3-venv): installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  if ! python3 -m venv --clear .venv >/dev/null 2>&1; then
    echo "confscope: installing python3-venv (Debian ships the venv module's pip separately)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv --clear .venv
  fi
fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if [ -n "$extras" ]; then
  # Editable: the tests import the working tree, with the C extensions built in place.
  "${pip[@]}" -e ".[$extras]"
else
  "${pip[@]}" .
fi
