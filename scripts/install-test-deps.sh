#!/usr/bin/env bash
# What `make test` needs beyond the Python packages: systemd-analyze and systemd-sysusers
# (Debian's `systemd` package) for tests/integration/test_systemd.py, which checks the unit
# with `systemd-analyze verify` and `systemd-analyze security --offline=true`. Installing the
# package does not make systemd the init of a container; the tools run on files only.
# Installs with apt when missing and possible; otherwise says so and exits 0 (those tests then
# skip, naming this script).
set -uo pipefail

SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

command -v systemd-analyze >/dev/null && command -v systemd-sysusers >/dev/null && exit 0

if command -v apt-get >/dev/null && { [[ -z $SUDO ]] || sudo -n true 2>/dev/null; }; then
    echo "install-test-deps: installing systemd (apt) for systemd-analyze" >&2
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends systemd >/dev/null && exit 0
fi
echo "install-test-deps: cannot install systemd (apt); the unit checks of test_systemd.py will skip" >&2
exit 0
