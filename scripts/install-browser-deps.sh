#!/usr/bin/env bash
# Browser and front-end dependencies of the browser tests and the demo (issue 4):
#  - Debian's `chromium` (never a browser download: only the package registries are reachable);
#  - the npm packages of package.json (mediasoup-client 2.4.12, esbuild, playwright-core), with `npm ci`;
#  - the demo's bundle demo/static/bundle.js, built with esbuild (never committed).
# Idempotent and quick when everything is already there. Usage: scripts/install-browser-deps.sh [--no-chromium]
set -euo pipefail
cd "$(dirname "$0")/.."

want_chromium=1
[[ "${1:-}" == "--no-chromium" ]] && want_chromium=0

SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "install-browser-deps: no apt-get here; install $* yourself" >&2
        exit 1
    fi
    if [[ $apt_updated == 0 ]]; then
        $SUDO apt-get update -qq
        apt_updated=1
    fi
    $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [[ $want_chromium == 1 && ! -x /usr/bin/chromium ]]; then
    echo "install-browser-deps: installing Debian's chromium (apt)" >&2
    apt_install chromium fonts-dejavu-core
fi

if ! command -v npm >/dev/null; then
    echo "install-browser-deps: installing node and npm (apt)" >&2
    apt_install nodejs npm
fi

# npm ci only when package-lock.json changed since the last install.
stamp=node_modules/.tureen-installed
if [[ ! -f $stamp || package-lock.json -nt $stamp || package.json -nt $stamp ]]; then
    npm ci --no-audit --no-fund --loglevel=error
    touch "$stamp"
fi

npm run --silent build
