#!/usr/bin/env bash
# run-local.sh starts a proglog cluster on this machine, one `proglog agent`
# process per node: node-1 bootstraps it, the others join node-1 by Serf.
# It prints where the nodes listen and what to type next, waits, and on
# Ctrl-C (SIGINT) or SIGTERM stops every node gracefully and waits for all of
# them. A second Ctrl-C while they stop kills them.
#
# `make run` calls it with the Makefile's variables. Settings, from the
# environment (the defaults are `make run`'s):
#   RUN_BIN          the proglog binary                    bin/proglog
#   RUN_DIR          data and logs, node-N/ and node-N.log .data
#   RUN_CONFIG_DIR   certificates and ACL (make gencert)   $PROGLOG_CONFIG_DIR or ~/.proglog
#   RUN_HOST         the address every node listens on     127.0.0.1
#   RUN_RPC_PORTS    RPC (Raft + gRPC) port of each node   "8401 8402 8403"
#   RUN_HTTP_PORTS   HTTPS port of each node               "8080 8081 8082"
#   RUN_SERF_PORTS   Serf port of each node                "8301 8302 8303"
#   RUN_READY_TIMEOUT seconds to wait for the cluster      60
#   RUN_PPROF_PORTS  ports where each node serves Go's     none
#                    profiles on RUN_HOST (--pprof-addr)
# The number of nodes is the number of RPC ports. Works with bash 3.2 (macOS).
set -euo pipefail

bin=${RUN_BIN:-bin/proglog}
dir=${RUN_DIR:-.data}
config_dir=${RUN_CONFIG_DIR:-${PROGLOG_CONFIG_DIR:-$HOME/.proglog}}
host=${RUN_HOST:-127.0.0.1}
read -r -a rpc_ports <<<"${RUN_RPC_PORTS:-8401 8402 8403}"
read -r -a http_ports <<<"${RUN_HTTP_PORTS:-8080 8081 8082}"
read -r -a serf_ports <<<"${RUN_SERF_PORTS:-8301 8302 8303}"
read -r -a pprof_ports <<<"${RUN_PPROF_PORTS:-}"
ready_timeout=${RUN_READY_TIMEOUT:-60}

# say prints a message. A failed write is ignored: when the output is gone
# (`make run | tee run.log` and Ctrl-C kills tee too), the script must still
# stop the nodes.
say() { printf 'run-local: %s\n' "$*" 2>/dev/null || true; }
fail() {
	printf 'run-local: %s\n' "$*" >&2
	exit 1
}

n=${#rpc_ports[@]}
[ "$n" -ge 1 ] || fail "RUN_RPC_PORTS names no port"
[ "${#http_ports[@]}" -eq "$n" ] && [ "${#serf_ports[@]}" -eq "$n" ] ||
	fail "RUN_RPC_PORTS, RUN_HTTP_PORTS and RUN_SERF_PORTS must name as many ports each ($n)"
[ "${#pprof_ports[@]}" -eq 0 ] || [ "${#pprof_ports[@]}" -eq "$n" ] ||
	fail "RUN_PPROF_PORTS must name a port for each node ($n) or none"
[ -x "$bin" ] || fail "$bin is not an executable: run 'make build' (or 'make run', which builds it)"
for f in ca.pem server.pem server-key.pem root-client.pem root-client-key.pem model.conf policy.csv; do
	[ -s "$config_dir/$f" ] || fail "$config_dir/$f is missing: run 'make gencert' (or 'make run', which makes it)"
done
# in_use reports whether something accepts TCP connections on $1:$2 (bash's
# /dev/tcp; a refused connection fails at once on a local address).
in_use() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# A port in use would make that node fail, and, worse, an earlier cluster
# still on these ports would answer the readiness check below in its place.
for k in "${!rpc_ports[@]}"; do
	for port in "${rpc_ports[$k]}" "${http_ports[$k]}" "${serf_ports[$k]}"; do
		! in_use "$host" "$port" ||
			fail "$host:$port (a port of node-$((k + 1))) is in use: is another 'make run' running? Stop it, or choose other ports (make run RPC_PORTS=... HTTP_PORTS=... SERF_PORTS=...)"
	done
done
mkdir -p "$dir"

addrs=""
for port in "${rpc_ports[@]}"; do addrs="${addrs:+$addrs,}$host:$port"; done
# The client flags a user needs: none with `make run`'s defaults.
client_flags=""
[ "$addrs" = "127.0.0.1:8401,127.0.0.1:8402,127.0.0.1:8403" ] || client_flags="$client_flags --addr $addrs"
[ "$config_dir" = "${PROGLOG_CONFIG_DIR:-$HOME/.proglog}" ] || client_flags="$client_flags --config-dir $config_dir"

pids=()
# reaped[i] is node-i's exit status once the final wait below has collected
# it; stop must not wait for that node again.
reaped=()
stopping=""

# stop stops every node that was started, waits for each, and exits: with
# status 1 when a node failed or when status is 1.
stop() {
	local status=$1 i pid rc live
	[ -z "$stopping" ] || return 0
	stopping=1
	# Writing to a closed pipe must not kill the script before it has
	# stopped the nodes, which run in their own process groups and would be
	# left running, holding their ports.
	trap '' PIPE
	# A second signal while the nodes stop is passed on: they then exit at once.
	trap 'say "killing the nodes"; kill -INT ${pids[@]+"${pids[@]}"} 2>/dev/null || true' INT TERM
	# Only the nodes still running: those the final wait reaped were
	# reported when they exited.
	live=0
	i=${#pids[@]}
	while [ "$i" -gt 0 ]; do
		[ -n "${reaped[$i]:-}" ] || live=$((live + 1))
		i=$((i - 1))
	done
	[ "$live" -gt 0 ] && say "stopping $live nodes (Ctrl-C again to kill them)"
	# One at a time, the last started first: a node that leaves while the
	# others still run has its leave acknowledged at once, where nodes leaving
	# together each wait out Serf's leave timeout.
	i=${#pids[@]}
	while [ "$i" -gt 0 ]; do
		pid=${pids[$((i - 1))]}
		if [ -n "${reaped[$i]:-}" ]; then
			# Exited on its own, already reported.
			status=1
			i=$((i - 1))
			continue
		fi
		kill -INT "$pid" 2>/dev/null || true
		rc=0
		wait "$pid" || rc=$?
		if [ "$rc" -ne 0 ]; then
			say "node-$i exited with status $rc; see $dir/node-$i.log"
			status=1
		fi
		i=$((i - 1))
	done
	[ "$live" -gt 0 ] && say "every node stopped"
	exit "$status"
}
trap 'stop 0' INT TERM
trap 'stop 1' EXIT

# start_node starts node $1 in the background. Each node runs in its own
# process group (set -m), so a Ctrl-C on the terminal reaches only this
# script, which passes it on once: a node that got it twice would take the
# second for "kill now".
start_node() {
	local i=$1 k=$(($1 - 1))
	local args=(agent
		--node-name "node-$i"
		--data-dir "$dir/node-$i"
		--config-dir "$config_dir"
		--bind-addr "$host:${serf_ports[$k]}"
		--rpc-port "${rpc_ports[$k]}"
		--http-port "${http_ports[$k]}")
	if [ "${#pprof_ports[@]}" -gt 0 ]; then
		args+=(--pprof-addr "$host:${pprof_ports[$k]}")
	fi
	if [ "$i" -eq 1 ]; then
		args+=(--bootstrap)
	else
		args+=(--start-join-addrs "$host:${serf_ports[0]}")
	fi
	# The command line heads the node's log, so a node stopped by hand can be
	# started again the same way.
	{ printf 'run-local: started as:'; printf ' %q' "$bin" "${args[@]}"; printf '\n'; } >>"$dir/node-$i.log"
	set -m
	"$bin" "${args[@]}" >>"$dir/node-$i.log" 2>&1 &
	pids+=($!)
	set +m
}

# wait_for waits until the servers at addresses $1 answer, listing at least
# $2 servers and a leader when $2 is not 0; it fails when a node exits or the
# deadline passes.
deadline=$((SECONDS + ready_timeout))
wait_for() {
	local addr=$1 want=$2 i pid
	until "$bin" servers --addr "$addr" --config-dir "$config_dir" --expect "$want" --timeout 2s >/dev/null 2>&1; do
		i=0
		for pid in "${pids[@]}"; do
			i=$((i + 1))
			if ! kill -0 "$pid" 2>/dev/null; then
				say "node-$i exited while starting; the end of $dir/node-$i.log:" >&2
				tail -n 15 "$dir/node-$i.log" >&2
				stop 1
			fi
		done
		if [ "$SECONDS" -ge "$deadline" ]; then
			say "the cluster did not form within ${ready_timeout}s; see $dir/node-*.log" >&2
			stop 1
		fi
	done
}

# node-1 must be up before the others join it by Serf. It need not lead yet:
# after a restart it cannot, until enough of the others are back.
start_node 1
wait_for "$host:${rpc_ports[0]}" 0
for i in $(seq 2 "$n"); do start_node "$i"; done
wait_for "$addrs" "$n"

say "a $n-node proglog cluster is running on $host; data and logs in $dir/"
say "gossip is encrypted with $config_dir/gossip.key, and the leader verifies each node's certificate before it votes (README: Threat model)"
i=0
for pid in "${pids[@]}"; do
	i=$((i + 1))
	k=$((i - 1))
	printf '  node-%d  pid %s  rpc %s:%s  https://%s:%s  serf %s:%s  log %s/node-%d.log\n' "$i" "$pid" \
		"$host" "${rpc_ports[$k]}" "$host" "${http_ports[$k]}" "$host" "${serf_ports[$k]}" "$dir" "$i"
done
# shellcheck disable=SC2086 # client_flags is a list of words
"$bin" servers $client_flags | sed 's/^/  /'
cat <<EOF

In another terminal:
  $bin produce$client_flags hello world         # prints the offsets
  $bin consume$client_flags --from 0            # prints the records
  $bin consume$client_flags --from 0 --follow   # and waits for more
  $bin bench$client_flags --mode batch          # load test
  $bin topic create$client_flags orders         # a topic of its own, offsets from 0
  $bin produce$client_flags --topic orders o1   # write to it (consume --topic orders reads it)
  $bin topic list$client_flags                  # every topic, its offsets and size
  curl --cacert $config_dir/ca.pem --cert $config_dir/root-client.pem --key $config_dir/root-client-key.pem \\
    -d '{"record": {"value": "aGVsbG8="}}' https://$host:${http_ports[0]}/
  # the same on a topic: POST https://$host:${http_ports[0]}/topics/orders; GET .../topics/orders?offset=0

Ctrl-C stops every node.
EOF

# Wait for the nodes, one after the other, and report each that exits on its
# own (e.g. killed by an operator): one that dies early is reported once the
# ones started before it have exited as well, since bash 3.2 has no `wait -n`.
# A signal interrupts the wait and runs stop.
i=0
for pid in "${pids[@]}"; do
	i=$((i + 1))
	rc=0
	wait "$pid" || rc=$?
	reaped[$i]=$rc
	say "node-$i exited on its own with status $rc; see $dir/node-$i.log"
done
say "every node exited on its own"
exit 1
