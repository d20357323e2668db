#!/usr/bin/env bash
# bench-footprint.sh starts a three-node proglog cluster with run-local.sh (as
# `make run`), writes records in batches up to each count of FOOTPRINT_COUNTS
# and, at each, prints every node's memory (RSS: anonymous and file-backed
# parts, Go heap in use) and where its disk space is: the topics' logs, the
# Raft log, the snapshots (beyond what they share with the topics by hard
# link) and the rest, beside what the records need (values plus framing). Then
# it stops the cluster. `make bench-footprint` calls it. Settings, from the
# environment:
#   RUN_BIN           the proglog binary                      bin/proglog
#   RUN_DIR           data and logs (emptied first)           .data-footprint
#   RUN_CONFIG_DIR    certificates and ACL (make gencert)     $PROGLOG_CONFIG_DIR or ~/.proglog
#   RUN_RPC_PORTS     RPC ports, one per node                 "9741 9742 9743"
#   RUN_HTTP_PORTS    HTTPS ports                             "9781 9782 9783"
#   RUN_SERF_PORTS    Serf ports                              "9761 9762 9763"
#   FOOTPRINT_COUNTS  record counts to measure at, rising     "1000000 5000000"
#   FOOTPRINT_SIZE    bytes per record value                  100
#   FOOTPRINT_SETTLE  seconds to wait after each write before
#                     measuring (a snapshot may be due)       0
set -euo pipefail

bin=${RUN_BIN:-bin/proglog}
dir=${RUN_DIR:-.data-footprint}
config_dir=${RUN_CONFIG_DIR:-${PROGLOG_CONFIG_DIR:-$HOME/.proglog}}
export RUN_RPC_PORTS=${RUN_RPC_PORTS:-9741 9742 9743}
export RUN_HTTP_PORTS=${RUN_HTTP_PORTS:-9781 9782 9783}
export RUN_SERF_PORTS=${RUN_SERF_PORTS:-9761 9762 9763}
counts=${FOOTPRINT_COUNTS:-1000000 5000000}
size=${FOOTPRINT_SIZE:-100}
settle=${FOOTPRINT_SETTLE:-0}
# frame_bytes is what a topic's store file adds to each record's value:
# the frame header and the record's fixed fields (distlog/storage
# frameOverhead). The index entry (12 bytes) is not counted in it.
frame_bytes=44

[ -x "$bin" ] || { echo "bench-footprint: $bin is not an executable: run 'make build'" >&2; exit 1; }

# shellcheck source=deploy/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
start_bench_cluster bench-footprint "$bin" "$dir" "$config_dir"
read -r -a http_ports <<<"$RUN_HTTP_PORTS"

echo "bench-footprint: $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg), ${#node_pids[@]} nodes on $addrs, $size-byte records"

# mb prints a byte count in MB (10^6 bytes).
mb() { awk -v b="$1" 'BEGIN { printf "%.0f MB", b / 1e6 }'; }
# kb_of prints the kB figure of field $1 of /proc/$2/status.
kb_of() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status" 2>/dev/null || echo 0; }
# heap prints the Go heap in use of the node with HTTPS port $1, from /metrics.
heap() {
	curl -s --cacert "$config_dir/ca.pem" --cert "$config_dir/root-client.pem" --key "$config_dir/root-client-key.pem" \
		"https://127.0.0.1:$1/metrics" | awk '$1 == "go_memstats_heap_inuse_bytes" { printf "%.0f MB", $2 / 1e6 }'
}
# du_bytes prints the disk space, in bytes, of the paths in $@ counted
# together (a file with several links counts once, for the first path).
du_bytes() { du -s -B1 "$@" 2>/dev/null | awk '{ print $1 }'; }

written=0
for count in $counts; do
	if [ "$count" -gt "$written" ]; then
		start=$SECONDS
		if ! out=$("$bin" bench --addr "$addrs" --config-dir "$config_dir" --size "$size" --json \
			--mode batch --batch 100 --concurrency 4 --records $((count - written)) 2>"$dir/bench.err"); then
			echo "bench-footprint: writing records failed: $(tail -n 1 "$dir/bench.err")" >&2
			exit 1
		fi
		written=$count
		echo "wrote $written records ($(jq -r '.records_per_sec | floor' <<<"$out" 2>/dev/null || echo '?')/s, $((SECONDS - start)) s)"
	fi
	[ "$settle" -eq 0 ] || sleep "$settle" # a fixed wait before measuring, by request
	need=$((written * (size + frame_bytes)))
	echo "at $written records: values + frames $(mb $((written * size))) + $(mb $((written * frame_bytes))) = $(mb "$need") per node"
	i=0
	for pid in "${node_pids[@]}"; do
		i=$((i + 1))
		node=$dir/node-$i
		# In one du each file counts once: the snapshots' links to the
		# topics' segments count under topics, the first path named.
		read -r topics raftlog snaps total < <(du -s -B1 "$node/topics" "$node/raft/log" "$node/raft/snapshots" 2>/dev/null |
			awk '{ printf "%s ", $1 } END { print "" }')
		total=$(du_bytes "$node")
		printf 'node-%d: RSS %s (anon %s, file %s), heap %s, fds %s | disk %s = %.2fx: topics %s, raft log %s, snapshots %s, other %s\n' \
			"$i" "$(mb $(($(kb_of VmRSS "$pid") * 1024)))" "$(mb $(($(kb_of RssAnon "$pid") * 1024)))" \
			"$(mb $(($(kb_of RssFile "$pid") * 1024)))" "$(heap "${http_ports[$((i - 1))]}")" \
			"$(find "/proc/$pid/fd" -mindepth 1 2>/dev/null | wc -l)" \
			"$(mb "$total")" "$(awk -v t="$total" -v n="$need" 'BEGIN { print t / n }')" \
			"$(mb "$topics")" "$(mb "$raftlog")" "$(mb "$snaps")" "$(mb $((total - topics - raftlog - snaps)))"
	done
done
