#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine: tshark (second engine),
# chromium (HTML report test), a C compiler, and the project with its test extras in `.venv`
# (scripts/venv.sh; Debian's system Python refuses pip outside a virtual environment, PEP 668).
# Then: .venv/bin/python -m pytest -q -p no:cacheprovider
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# A C compiler and Python's headers build the hot-path extensions, so CI tests them against their
# numpy twins (without them the install still works, on the twins alone).
command -v cc >/dev/null 2>&1 || need+=(gcc)
python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections || true
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash scripts/venv.sh test
