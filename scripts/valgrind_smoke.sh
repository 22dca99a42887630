#!/usr/bin/env bash
# `cardgate serve` under valgrind memcheck (built without jemalloc, which
# valgrind cannot see into): a few clicks of every kind, then SIGTERM. Fails
# on any memory error or any leaked block.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh build-vg -DCG_WITH_JEMALLOC=OFF -DCG_BUILD_TESTS=OFF
BIN=build-vg/cardgate
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LARK_VERIFICATION_TOKEN=vg-token LARK_ENCRYPT_KEY=vg-key
valgrind --quiet --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all \
  --error-exitcode=99 "$BIN" serve --port 0 --db "$tmp/vg.db" >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$tmp/out" 2>/dev/null && break; sleep 0.2; done
url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$tmp/out")
[ -n "$url" ] || { cat "$tmp/err"; echo "valgrind: serve did not start"; exit 1; }
t() { "$BIN" trigger "$@" >/dev/null || true; }
t --url "$url/webhook/card" --message-id om_vg1 --value '{"action":"accept"}'
t --url "$url/webhook/card" --message-id om_vg1 --value '{"action":"reject"}'
t --url "$url/webhook/card" --message-id om_vg2
t --url "$url/webhook/event" --format v2 --message-id om_vg3 --value '{"action":"accept"}'
t --url "$url/webhook/event" --format v2 --kind url_preview
t --url "$url/webhook/card" --challenge c1
t --url "$url/webhook/card" --bad-signature
t --url "$url/webhook/card" --corrupt
t --url "$url/webhook/event" --format v2 --wrong-token
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
if [ "$rc" -ne 0 ] || [ -s "$tmp/err.vg" ] || grep -q '==[0-9]*==' "$tmp/err"; then
  grep '==[0-9]*==' "$tmp/err" | head -60
  echo "valgrind: memory errors or leaks (exit $rc)"; exit 1
fi
echo "valgrind: serve clean (no errors, no leaks) after 9 requests"
