#!/usr/bin/env bash
# bench-cluster.sh starts a three-node proglog cluster with run-local.sh (mTLS,
# every Raft batch fsynced on each node, as `make run`), runs the workloads of
# the README's Performance table with `proglog bench`, prints one line each
# (records/s, MB/s, p50/p99 latency; for the write workloads, each node's
# CPU per record, from /proc) and every node's RSS and data size, and
# stops the cluster. `make bench-cluster` calls it. Settings, from the
# environment:
#   RUN_BIN          the proglog binary                     bin/proglog
#   RUN_DIR          data and logs (emptied first)          .data-bench
#   RUN_CONFIG_DIR   certificates and ACL (make gencert)    $PROGLOG_CONFIG_DIR or ~/.proglog
#   RUN_RPC_PORTS    RPC ports, one per node                "9501 9502 9503"
#   RUN_HTTP_PORTS   HTTPS ports                            "9581 9582 9583"
#   RUN_SERF_PORTS   Serf ports                             "9531 9532 9533"
#   BENCH_SCALE      multiplies every workload's record count 1
#   BENCH_SIZE       bytes per record value                  100
#   BENCH_ONLY       runs only the workloads whose name matches this
#                    extended regular expression (grep -E)   all
#   BENCH_REPEAT     runs each workload this many times      1
# Needs jq to read the --json reports.
set -euo pipefail

bin=${RUN_BIN:-bin/proglog}
dir=${RUN_DIR:-.data-bench}
config_dir=${RUN_CONFIG_DIR:-${PROGLOG_CONFIG_DIR:-$HOME/.proglog}}
export RUN_RPC_PORTS=${RUN_RPC_PORTS:-9501 9502 9503}
export RUN_HTTP_PORTS=${RUN_HTTP_PORTS:-9581 9582 9583}
export RUN_SERF_PORTS=${RUN_SERF_PORTS:-9531 9532 9533}
scale=${BENCH_SCALE:-1}
size=${BENCH_SIZE:-100}
only=${BENCH_ONLY:-}
repeat=${BENCH_REPEAT:-1}

command -v jq >/dev/null || { echo "bench-cluster: needs jq (apt-get install jq)" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench-cluster: $bin is not an executable: run 'make build'" >&2; exit 1; }

# shellcheck source=deploy/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
start_bench_cluster bench-cluster "$bin" "$dir" "$config_dir"

echo "bench-cluster: $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg), ${#node_pids[@]} nodes on $addrs, $size-byte records"
run() {
	local name=$1 out k
	shift
	if [ -n "$only" ] && ! grep -Eq -- "$only" <<<"$name"; then
		return 0
	fi
	for k in $(seq 2 "$repeat"); do run1 "$name" "$@"; done
	run1 "$name" "$@"
}
run1() {
	local name=$1 out before cpu=""
	shift
	before=$(node_cpu_ticks)
	if ! out=$("$bin" bench --addr "$addrs" --config-dir "$config_dir" --size "$size" --json "$@" 2>"$dir/bench.err"); then
		printf '%-46s failed: %s\n' "$name" "$(tail -n 1 "$dir/bench.err")"
		return 0
	fi
	# The consume modes write their records first, untimed: their CPU
	# would count that too.
	if [ -n "$before" ] && ! grep -q -- '--mode consume' <<<"$*"; then
		cpu=$(cpu_per_record "$before" "$(node_cpu_ticks)" "$(jq -r .records <<<"$out")")
	fi
	jq -r --arg name "$name" --arg cpu "$cpu" \
		'"\($name | . + " " * (46 - length)) \(.records_per_sec | floor) records/s  \(.mb_per_sec * 100 | floor / 100) MB/s  p50 \(.latency_ms.p50) ms  p99 \(.latency_ms.p99) ms  errors \(.errors)\($cpu)"' <<<"$out"
}
# node_cpu_ticks prints the CPU time (user + system, in clock ticks) each
# node has used so far, space-separated, or nothing where /proc is missing.
node_cpu_ticks() {
	local pid ticks=""
	[ -r /proc/self/stat ] || return 0
	for pid in "${node_pids[@]}"; do
		ticks="$ticks $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)"
	done
	echo "$ticks"
}
# cpu_per_record BEFORE AFTER RECORDS prints each node's CPU per record, in
# µs, over one run: where a workload is bound by CPU (this machine has few
# cores for three nodes and the client) rather than by the disk.
cpu_per_record() {
	local hz
	hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
	awk -v before="$1" -v after="$2" -v records="$3" -v hz="$hz" 'BEGIN {
		n = split(before, b, " "); split(after, a, " ")
		if (records <= 0) exit
		out = "  cpu/record"
		for (i = 1; i <= n; i++) out = out sprintf(" %.1f", (a[i] - b[i]) * 1e6 / hz / records)
		printf "%s µs (node-1..%d)", out, n
	}'
}
# What this binary's bench offers: read once, since `grep -q` in a pipe would
# end the pipe early and, with pipefail, fail the test at random.
bench_help=$("$bin" bench --help 2>/dev/null || true)
run "one write in flight (produce, 1)" --mode produce --concurrency 1 --records $((2000 * scale))
run "many writers (produce, 64)" --mode produce --concurrency 64 --records $((20000 * scale))
if grep -q -- --no-coalesce <<<"$bench_help"; then
	run "many writers, one RPC each (produce, 64)" --mode produce --concurrency 64 --no-coalesce --records $((20000 * scale))
fi
run "batches (batch 100, 4)" --mode batch --batch 100 --concurrency 4 --records $((200000 * scale))
run "one pipelined stream (stream 64)" --mode stream --batch 64 --concurrency 1 --records $((50000 * scale))
run "consume (unary, 8)" --mode consume --concurrency 8 --records $((20000 * scale))
if grep -q consume-stream <<<"$bench_help"; then
	run "consume (stream, batch 10000)" --mode consume-stream --concurrency 1 --batch 10000 --records $((500000 * scale))
	run "consume (stream, batch 10000, 1 KiB records)" --mode consume-stream --concurrency 1 --batch 10000 --size 1024 --records $((200000 * scale))
fi
i=0
for pid in "${node_pids[@]}"; do
	i=$((i + 1))
	rss=$(awk '/^VmRSS:/ {printf "%.0f MB", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || echo "?")
	printf 'node-%d: RSS %s, data %s\n' "$i" "$rss" "$(du -sh "$dir/node-$i" | cut -f1)"
done
