#!/usr/bin/env bash
# What the install needs to compile Tureen's optional native fan-out core (workers/_native.c,
# built by setup.py): a C compiler and the headers of the Python that runs Tureen.
# Installs them with apt when missing and possible; otherwise says so and exits 0 (the core is
# optional: without it the workers run the pure-Python fan-out). Usage: install-build-deps.sh PYTHON
set -uo pipefail
python="${1:-python3}"

SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

want=()
command -v gcc >/dev/null || want+=(gcc libc6-dev)
if ! "$python" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    # Debian's own Python has its headers in python3-dev; another Python brings its own.
    [[ "$("$python" -c 'import sys; print(sys.base_prefix)')" == /usr ]] && want+=(python3-dev)
fi
[[ ${#want[@]} == 0 ]] && exit 0

if command -v apt-get >/dev/null && { [[ -z $SUDO ]] || sudo -n true 2>/dev/null; }; then
    echo "install-build-deps: installing ${want[*]} (apt) for the native fan-out core" >&2
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null && exit 0
fi
echo "install-build-deps: cannot install ${want[*]}; Tureen installs without its native fan-out core" >&2
exit 0
