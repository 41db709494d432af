#!/usr/bin/env bash
# Installs everything journeyd needs to build, run and test on Debian 12, skipping what is present.
# Usage: deploy/install-deps.sh [--test]   (--test adds the browser and test tools)
set -euo pipefail
pkgs=(build-essential cmake pkg-config libwebsockets-dev libevent-dev libjansson-dev libpq-dev
      postgresql-15 postgresql-client-15 libssl-dev libcrypt-dev openssl nodejs npm ca-certificates)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(libcmocka-dev postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl libxml2-utils
         chromium clang clang-format)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's node may already come from elsewhere (e.g. a preinstalled /usr/bin/node); keep it.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]:-}"
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
