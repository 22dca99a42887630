#!/usr/bin/env bash
# Installs what cardgate needs on Debian 12 (as root, or with sudo), only what
# is missing. Usage: scripts/setup.sh [--test] [--bench]
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential cmake pkg-config libuv1-dev libhttp-parser-dev libssl-dev
      libjansson-dev libsqlite3-dev libcurl4-openssl-dev libjemalloc-dev openssl
      libwslay-dev libprotobuf-c-dev protobuf-c-compiler)
for a in "$@"; do
  case "$a" in
    --test) pkgs+=(libcmocka-dev clang-14 libclang-rt-14-dev nodejs npm valgrind sqlite3 curl) ;;
    --bench) pkgs+=(wrk nginx-light nodejs npm util-linux procps) ;;
    *) echo "setup.sh: unknown option '$a' (use --test and/or --bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Node may come from elsewhere than Debian's package; accept any node >= 18.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  tmp=(); for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for a in "$@"; do
  if { [ "$a" = --test ] || [ "$a" = --bench ]; } && { [ ! -d tests/interop/node_modules/@larksuiteoapi ] || [ ! -d tests/interop/node_modules/dingtalk-stream ] || [ ! -d tests/interop/node_modules/ws ]; }; then
    echo "setup: npm ci in tests/interop (official Lark and DingTalk Node SDKs, pinned)"
    (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
