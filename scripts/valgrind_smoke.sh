#!/usr/bin/env bash
# `cardgate serve` under valgrind memcheck (built without jemalloc, which
# valgrind cannot see into): a few clicks of every kind, then SIGTERM; then
# again with both long connections (Lark WebSocket, DingTalk Stream) against
# `cardgate emulate`: clicks, a chat message, a malformed frame, a dropped
# socket and a reconnect, a DingTalk disconnect. Fails on any memory error
# or any leaked block.
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

# ---- the long connections
unset LARK_VERIFICATION_TOKEN LARK_ENCRYPT_KEY
"$BIN" emulate --port 0 --app-id cli_a1b2c3d4e5f60718 --app-secret vg-secret \
  --dingtalk-client-id ding_vg --dingtalk-client-secret vg-dt-secret >"$tmp/emu.out" 2>"$tmp/emu.err" &
epid=$!
trap 'kill "$epid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do grep -q 'listening on' "$tmp/emu.out" 2>/dev/null && break; sleep 0.1; done
emu=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$tmp/emu.out" | head -1)
[ -n "$emu" ] || { cat "$tmp/emu.err"; echo "valgrind: emulate did not start"; exit 1; }
post() { curl -s -m 30 -X POST -H 'Content-Type: application/json' -d "$2" "$emu$1" >>"$tmp/posts" || true; echo >>"$tmp/posts"; }
valgrind --quiet --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all \
  --error-exitcode=99 "$BIN" serve --port 0 --db "$tmp/vg2.db" --lark-transport ws \
  --app-id cli_a1b2c3d4e5f60718 --app-secret vg-secret --lark-base-url "$emu" \
  --dingtalk-client-id ding_vg --dingtalk-client-secret vg-dt-secret --dingtalk-base-url "$emu" \
  --dingtalk-card-template tpl_vg.schema --deadline-ms 2500 >"$tmp/out2" 2>"$tmp/err2" &
pid=$!
for _ in $(seq 1 300); do
  [ "$(grep -c 'connected: connected' "$tmp/err2" 2>/dev/null)" -ge 2 ] && break; sleep 0.2
done
grep -c 'connected: connected' "$tmp/err2" | grep -q 2 || { cat "$tmp/err2"; echo "valgrind: long connections did not connect"; kill "$pid"; exit 1; }
post /emulator/lark_ws/push '{"message_id":"om_vg_ws1","value":{"action":"accept"},"wait_ms":20000}'
post /emulator/lark_ws/push '{"message_id":"om_vg_ws2","value":{"action":"reject"},"fragments":3,"shuffle":true,"wait_ms":20000}'
post /emulator/lark_ws/fault '{"mode":"malformed"}'
post /emulator/lark_ws/push '{"message_id":"om_vg_ws3","value":{"action":"accept"},"wait_ms":20000}'
post /emulator/lark_ws/fault '{"mode":"drop"}'
post /emulator/dingtalk/push '{"kind":"message","conversationType":"2","conversationId":"cid_vg","senderStaffId":"u_vg","text":"hi","wait_ms":20000}'
post /emulator/dingtalk/push '{"kind":"card","outTrackId":"vg_card_1","userId":"u_vg","params":{"action":"accept"},"wait_ms":20000}'
post /emulator/dingtalk/fault '{"mode":"malformed"}'
post /emulator/dingtalk/ping '{}'
post /emulator/dingtalk/disconnect '{"close_ms":500}'
for _ in $(seq 1 300); do
  [ "$(grep -c 'connected: connected' "$tmp/err2" 2>/dev/null)" -ge 4 ] && break; sleep 0.2
done
post /emulator/lark_ws/push '{"message_id":"om_vg_ws4","value":{"action":"accept"},"wait_ms":20000}'
post /emulator/dingtalk/push '{"kind":"card","outTrackId":"vg_card_1","userId":"u_vg","params":{"action":"reject"},"wait_ms":20000}'
sleep 1
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
kill "$epid" 2>/dev/null || true
if [ "$rc" -ne 0 ] || grep -q '==[0-9]*==' "$tmp/err2"; then
  grep '==[0-9]*==' "$tmp/err2" | head -60
  tail -20 "$tmp/err2"
  echo "valgrind: memory errors or leaks with the long connections (exit $rc)"; exit 1
fi
acks=$(grep -o '"ack":{' "$tmp/posts" | wc -l)
[ "$acks" -ge 6 ] || { cat "$tmp/posts"; echo "valgrind: only $acks pushes were ACKed"; exit 1; }
echo "valgrind: serve clean (no errors, no leaks) with both long connections ($acks pushes ACKed, reconnects included)"
