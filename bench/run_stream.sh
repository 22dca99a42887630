#!/usr/bin/env bash
# Long connections (issues #4, #5): card clicks per second through ONE
# connection, end to end (gateway → client → handler → ACK), for cardgate and
# the official Node SDK clients against the same gateway in the same run; and
# memory per connection. Gateway (bench_stream_gateway) pinned to core 1, the
# client to core 0. Writes bench/out/stream.md (bench/run.sh puts it into
# docs/benchmarks.md). Usage: bench/run_stream.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
WINDOW=${CG_BENCH_WINDOW:-16}
NCONN=${CG_BENCH_NCONN:-200}
OUT=bench/out
mkdir -p "$OUT"
BIN=build-bench/cardgate
GW=build-bench/bench/bench_stream_gateway
CONNS=build-bench/bench/bench_stream_conns
[ -x "$GW" ] && [ -x "$CONNS" ] && [ -x "$BIN" ] ||
  CG_BUILD_TYPE=Release scripts/build.sh build-bench -DCG_BUILD_TESTS=OFF -DCG_WERROR=ON -DCG_BUILD_BENCH=ON
TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' /proc/"$1"/stat; }
hwm_kib() { awk '/VmHWM/{print $2}' /proc/"$1"/status; }
wait_line() { # FILE PATTERN
  for _ in $(seq 1 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "run_stream: '$2' never appeared in $1" >&2; return 1
}

declare -A R
# throughput NAME MODE CMD... (@BASE@ is replaced by the gateway's URL)
throughput() {
  local name=$1 mode=$2; shift 2
  taskset -c 1 "$GW" --mode "$mode" --seconds "$DUR" --warmup 2 --window "$WINDOW" >"$OUT/$name.gw" 2>&1 &
  local gw=$!
  wait_line "$OUT/$name.gw" '^PORT '
  local base; base="http://127.0.0.1:$(awk '/^PORT/{print $2}' "$OUT/$name.gw")"
  local args=()
  for a in "$@"; do args+=("${a//@BASE@/$base}"); done
  taskset -c 0 "${args[@]}" >"$OUT/$name.client.log" 2>&1 &
  local cl=$!
  wait_line "$OUT/$name.gw" '^MEASURING'
  local t0; t0=$(cpu_ticks "$cl")
  wait_line "$OUT/$name.gw" '^{'
  local t1; t1=$(cpu_ticks "$cl")
  local rss; rss=$(hwm_kib "$cl")
  kill "$cl" 2>/dev/null || true
  wait "$cl" 2>/dev/null || true
  wait "$gw" 2>/dev/null || true
  local line; line=$(grep '^{' "$OUT/$name.gw")
  R[$name.rate]=$(node -e 'const r=JSON.parse(process.argv[1]);console.log(Math.round(r.rate))' "$line")
  R[$name.p50]=$(node -e 'const r=JSON.parse(process.argv[1]);console.log((r.p50_us/1000).toFixed(2))' "$line")
  R[$name.p99]=$(node -e 'const r=JSON.parse(process.argv[1]);console.log((r.p99_us/1000).toFixed(2))' "$line")
  R[$name.err]=$(node -e 'const r=JSON.parse(process.argv[1]);console.log(r.errors)' "$line")
  R[$name.msgs]=$(node -e 'const r=JSON.parse(process.argv[1]);console.log(r.messages)' "$line")
  R[$name.cpu]=$(awk -v d=$((t1 - t0)) -v t="$TCK" -v n="${R[$name.msgs]}" 'BEGIN{printf "%.1f", n ? d*1e6/t/n : 0}')
  R[$name.rss]=$(awk -v v="$rss" 'BEGIN{printf "%.1f", v/1024}')
  echo "run_stream: $name: ${R[$name.rate]} msg/s, p99 ${R[$name.p99]} ms, ${R[$name.cpu]} µs CPU/msg" >&2
}

# memory NAME MODE CMD... (prints the client's JSON line once N are connected)
memory() {
  local name=$1 mode=$2; shift 2
  taskset -c 1 "$GW" --mode "$mode" --hold >"$OUT/$name.gw" 2>&1 &
  local gw=$!
  wait_line "$OUT/$name.gw" '^PORT '
  local base; base="http://127.0.0.1:$(awk '/^PORT/{print $2}' "$OUT/$name.gw")"
  local args=()
  for a in "$@"; do args+=("${a//@BASE@/$base}"); done
  taskset -c 0 "${args[@]}" >"$OUT/$name.client" 2>"$OUT/$name.client.err" &
  local cl=$!
  wait_line "$OUT/$name.client" '^{'
  kill "$cl" "$gw" 2>/dev/null || true
  wait "$cl" "$gw" 2>/dev/null || true
  R[$name.per]=$(node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").split("\n").find(l=>l[0]=="{"));console.log(r.per_connection_kib)' "$OUT/$name.client")
  echo "run_stream: $name: ${R[$name.per]} KiB per connection" >&2
}

rm -f "$OUT"/stream*.db*
throughput cg_lark lark "$BIN" serve --port 0 --db "$OUT/stream_lark.db" --no-builtin --workflow bench/stateless.json \
  --lark-transport ws --app-id cli_a1b2c3d4e5f60718 --app-secret bench_secret --lark-base-url @BASE@ --log-level error
throughput cg_lark_mem lark "$BIN" serve --port 0 --db "$OUT/stream_lark_mem.db" --no-builtin --workflow bench/stateless.json \
  --lark-transport ws --app-id cli_a1b2c3d4e5f60718 --app-secret bench_secret --lark-base-url @BASE@ --log-level error \
  --dedupe memory
throughput node_lark lark node bench/node_stream_client.mjs lark @BASE@
throughput cg_dt dingtalk "$BIN" serve --port 0 --db "$OUT/stream_dt.db" --no-builtin --workflow bench/stateless.json \
  --dingtalk-client-id ding_bench --dingtalk-client-secret bench_secret --dingtalk-base-url @BASE@ --log-level error
throughput cg_dt_mem dingtalk "$BIN" serve --port 0 --db "$OUT/stream_dt_mem.db" --no-builtin --workflow bench/stateless.json \
  --dingtalk-client-id ding_bench --dingtalk-client-secret bench_secret --dingtalk-base-url @BASE@ --log-level error \
  --dedupe memory
throughput node_dt dingtalk node bench/node_stream_client.mjs dingtalk @BASE@
memory mem_cg_lark lark "$CONNS" --mode lark --base @BASE@ --n "$NCONN"
memory mem_node_lark lark node bench/node_stream_client.mjs lark @BASE@ "$NCONN"
memory mem_cg_dt dingtalk "$CONNS" --mode dingtalk --base @BASE@ --n "$NCONN"
memory mem_node_dt dingtalk node bench/node_stream_client.mjs dingtalk @BASE@ "$NCONN"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b ? a/b : 0}'; }
{
  echo "## Long connections: one connection end to end, memory per connection"
  echo
  echo "Produced by \`bench/run_stream.sh $DUR\` (called by \`bench/run.sh\`). \`build-bench/bench/bench_stream_gateway\` plays the platform"
  echo "(Lark: bootstrap + pbbp2 protobuf frames; DingTalk: connections/open + JSON frames, built with cardgate's codecs),"
  echo "pinned to core 1, and pushes card clicks through the one connection of the client under test (core 0), keeping $WINDOW"
  echo "messages in flight and pushing the next as each ACK arrives; ${DUR} s measured after a 2 s warm-up. Every click has its own"
  echo "event id / messageId (no duplicate-suppression shortcut), and every ACK is checked (code 200 and a card / response in it)."
  echo "Both clients answer a fixed card: cardgate with \`serve --workflow bench/stateless.json\` (route, render, encode), the Node"
  echo "SDKs with a handler returning the same card (\`bench/node_stream_client.mjs\`: \`@larksuiteoapi/node-sdk\` 1.74.0 \`WSClient\` +"
  echo "\`EventDispatcher\`; \`dingtalk-stream\` 2.1.5 \`DWClient\` + \`socketCallBackResponse\`; Node $(node --version))."
  echo "CPU µs/msg is the client process's user+system time over the measured run divided by the messages ACKed; latency is push → ACK at the gateway."
  echo
  echo "| client | msg/s | p50 ms | p99 ms | client CPU µs/msg | client peak RSS MiB | bad ACKs |"
  echo "|---|---|---|---|---|---|---|"
  for n in cg_lark cg_lark_mem node_lark cg_dt cg_dt_mem node_dt; do
    echo "| $n | ${R[$n.rate]} | ${R[$n.p50]} | ${R[$n.p99]} | ${R[$n.cpu]} | ${R[$n.rss]} | ${R[$n.err]} |"
  done
  echo
  echo "- \`cg_*\`: the default, \`--dedupe store\`: before a click runs, its event id / messageId is checked and recorded in the SQLite"
  echo "  store (on the store worker thread, group-committed), and its answer is stored after — so a redelivery after a restart, or"
  echo "  to another instance sharing the store, is answered from the first answer and not handled again. Both threads share core 0."
  echo "- \`cg_*_mem\`: \`--dedupe memory\`: duplicates suppressed in this process only (still more than the SDKs, which have none)."
  echo "- cardgate's peak RSS is mostly its in-memory duplicate table (every event id with its answer, bounded at 200,000 ids /"
  echo "  64 MiB, \`src/common/limits.h\`), which a run of several hundred thousand distinct clicks fills; the SDKs keep none."
  echo
  echo "Ratios (same run): msg/s cardgate ÷ Node SDK, and CPU per message Node SDK ÷ cardgate (above 1: cardgate is cheaper):"
  echo
  echo "- Lark: default **$(ratio "${R[cg_lark.rate]}" "${R[node_lark.rate]}")×** msg/s, CPU **$(ratio "${R[node_lark.cpu]}" "${R[cg_lark.cpu]}")×**;"
  echo "  \`--dedupe memory\` **$(ratio "${R[cg_lark_mem.rate]}" "${R[node_lark.rate]}")×** msg/s, CPU **$(ratio "${R[node_lark.cpu]}" "${R[cg_lark_mem.cpu]}")×**."
  echo "- DingTalk: default **$(ratio "${R[cg_dt.rate]}" "${R[node_dt.rate]}")×** msg/s, CPU **$(ratio "${R[node_dt.cpu]}" "${R[cg_dt.cpu]}")×**;"
  echo "  \`--dedupe memory\` **$(ratio "${R[cg_dt_mem.rate]}" "${R[node_dt.rate]}")×** msg/s, CPU **$(ratio "${R[node_dt.cpu]}" "${R[cg_dt_mem.cpu]}")×**."
  echo "The gateway shares the machine (one core each): when its core is the bottleneck, msg/s understates the difference and CPU µs/msg is the fairer figure."
  echo
  echo "Where the time goes (perf on \`serve\`, and a loop over the codec): with \`--dedupe store\` about half of a message is the"
  echo "store round trip (the loop and the store worker trade the core: futex wake-ups, context switches, SQLite). On DingTalk the"
  echo "rest is mostly jansson: a frame is JSON whose \`data\` is JSON whose \`content\` is JSON, three parses at ~100 MB/s (a"
  echo "475-byte frame takes 5.4 µs to parse, the action 5.4 µs more), where V8's JSON.parse is several times faster — so the"
  echo "Node client wins on DingTalk throughput although its handler parses the same three layers. On Lark the frame"
  echo "is protobuf (protoc-c) and only the payload is JSON: there cardgate wins once the store round trip is off."
  echo
  echo "Memory per connection: $NCONN clients of one kind in one process, all connected to \`bench_stream_gateway --hold\`;"
  echo "(RSS with all connected − RSS before the first) / $NCONN. cardgate: \`build-bench/bench/bench_stream_conns\` (one \`cg_app\`,"
  echo "$NCONN \`cg_lark_ws\` / \`cg_dingtalk_stream\` clients); Node: \`node bench/node_stream_client.mjs MODE URL $NCONN\`."
  echo
  echo "| transport | cardgate KiB/connection | Node SDK KiB/connection | ratio |"
  echo "|---|---|---|---|"
  echo "| Lark long connection | ${R[mem_cg_lark.per]} | ${R[mem_node_lark.per]} | $(ratio "${R[mem_node_lark.per]}" "${R[mem_cg_lark.per]}")× less |"
  echo "| DingTalk Stream | ${R[mem_cg_dt.per]} | ${R[mem_node_dt.per]} | $(ratio "${R[mem_node_dt.per]}" "${R[mem_cg_dt.per]}")× less |"
} >"$OUT/stream.md"
cat "$OUT/stream.md"
