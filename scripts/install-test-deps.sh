#!/usr/bin/env bash
# What `make test` needs beyond the Python packages, from Debian's packages:
# - systemd-analyze and systemd-sysusers (`systemd`) for tests/integration/test_systemd.py,
#   which checks the unit with `systemd-analyze verify` and `systemd-analyze security
#   --offline=true`. Installing the package does not make systemd the init of a container;
#   the tools run on files only.
# - ffmpeg (with libx264, libvpx, libopus) for tests/integration/test_late_joiner.py: real
#   encoders send into Tureen and a real decoder receives.
# - ip (`iproute2`) for tests/netns.py: hosts as network namespaces (tests/integration/test_netns.py).
# Installs with apt what is missing when possible; otherwise says so and exits 0 (those tests
# then skip, naming this script).
set -uo pipefail

SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

missing=()
{ command -v systemd-analyze >/dev/null && command -v systemd-sysusers >/dev/null; } || missing+=(systemd)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v ip >/dev/null || missing+=(iproute2)
[[ ${#missing[@]} == 0 ]] && exit 0

if command -v apt-get >/dev/null && { [[ -z $SUDO ]] || sudo -n true 2>/dev/null; }; then
    echo "install-test-deps: installing ${missing[*]} (apt)" >&2
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null && exit 0
fi
echo "install-test-deps: cannot install ${missing[*]} (apt); test_systemd.py's unit checks and" \
    "test_late_joiner.py and the network-namespace tests (tests/netns.py) skip without them" >&2
exit 0
