# bench-lib.sh is sourced by the bench scripts (bench-cluster.sh,
# bench-footprint.sh): start_bench_cluster starts a three-node cluster with
# run-local.sh, as `make run` does, and stops it when the script exits.
#
# start_bench_cluster NAME BIN DIR CONFIG_DIR empties DIR, starts the
# cluster there (RUN_RPC_PORTS, RUN_HTTP_PORTS and RUN_SERF_PORTS from the
# environment) and waits until it runs. It sets addrs (the RPC addresses,
# comma-separated) and node_pids; NAME prefixes its messages.
start_bench_cluster() {
	local name=$1 bin=$2 dir=$3 config_dir=$4 port deadline
	rm -rf "$dir"
	mkdir -p "$dir"
	addrs=""
	for port in $RUN_RPC_PORTS; do addrs="${addrs:+$addrs,}127.0.0.1:$port"; done

	RUN_BIN=$bin RUN_DIR=$dir RUN_CONFIG_DIR=$config_dir bash "$(dirname "${BASH_SOURCE[0]}")/run-local.sh" >"$dir/run-local.out" 2>&1 &
	bench_cluster_pid=$!
	bench_cluster_stopped=""
	trap stop_bench_cluster EXIT
	trap 'exit 1' INT TERM

	deadline=$((SECONDS + 120))
	until grep -q "proglog cluster is running" "$dir/run-local.out" 2>/dev/null; do
		if ! kill -0 "$bench_cluster_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
			echo "$name: the cluster did not start:" >&2
			cat "$dir/run-local.out" >&2
			exit 1
		fi
		sleep 0.5 # polling a log file: there is nothing to wait on
	done
	read -r -a node_pids <<<"$(sed -n 's/^  node-[0-9]*  pid \([0-9]*\) .*/\1/p' "$dir/run-local.out" | tr '\n' ' ')"
}

# stop_bench_cluster stops the cluster start_bench_cluster started, once.
stop_bench_cluster() {
	[ -z "$bench_cluster_stopped" ] || return 0
	bench_cluster_stopped=1
	# TERM, not INT: a background job of a script starts with SIGINT
	# ignored, and run-local.sh could not trap it.
	kill -TERM "$bench_cluster_pid" 2>/dev/null || true
	wait "$bench_cluster_pid" 2>/dev/null || true
}
