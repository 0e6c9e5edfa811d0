#!/usr/bin/env bash
# Install the Debian packages cellgate needs to build, run and test.
# Called by `make` (through the deps stamp) and by .ci/run. Idempotent: it
# asks apt only for what is missing, so a second run costs a dpkg query.
set -euo pipefail

PKGS=(
  # build
  build-essential pkg-config clang libclang-rt-14-dev
  libzmq3-dev libsodium-dev nettle-dev libjansson-dev libcmocka-dev libseccomp-dev libcurl4-openssl-dev
  libmicrohttpd-dev libwslay-dev
  # the box's neighbours: bubblewrap for the box-creation benchmark
  bubblewrap
  # runtimes and the Jupyter side (Debian's /usr/bin/python3, never pyenv's)
  python3 bash
  python3-jupyter-client python3-nbclient python3-jupyter-kernel-test
  python3-nbformat python3-nbconvert python3-ipykernel python3-zmq python3-matplotlib python3-pandas python3-pil python3-plotly
  python3-pytest python3-jsonschema jupyter-console
  # the gateway's real clients in tests/test_gateway.py
  python3-websocket jupyter-server
  # the browser test (tests/test_browser.py): classic Notebook 6 in Chromium,
  # driven by playwright-core from npm (installed below)
  python3-notebook chromium
  # ... whose widget step needs ipywidgets in the kernel and its notebook
  # extension in the page
  python3-ipywidgets jupyter-nbextension-jupyter-js-widgets
  # toolchains of the languages cellgate runs (a missing one is reported by
  # `cellgate doctor` and gets no kernelspec; swift has no Debian package)
  nodejs ruby php-cli golang-go default-jdk-headless rustc kotlin
  # tools the test suite uses
  valgrind procps openssl
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' \
    || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
  else
    SUDO=
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# playwright-core for the browser test, at the version its lock file pins
# (only the library: the browser is Debian's chromium, never a download).
# npm ls fails when the installed tree is missing or differs from the pin.
cd "$(dirname "$0")/../tests/browser"
if command -v npm >/dev/null && ! npm ls --depth=0 >/dev/null 2>&1; then
  echo "deps: npm ci in tests/browser" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
