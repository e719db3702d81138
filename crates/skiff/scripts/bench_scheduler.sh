#!/bin/bash
# usage: bench_scheduler.sh BIN LABEL [NODES] [PODS] [perf]
# One `skiff bench scheduler` run end to end against a fresh `skiff server
# --no-agent` (ports 26443/26444, data in /tmp): prints the bench table,
# the server's CPU seconds and peak RSS; LABEL.rss samples RSS (kB) and
# CPU (ticks) every 5 s; with "perf", LABEL.perf.data (read it with
# `perf script --no-inline -i … > S` and perf_frames.py), LABEL.server.log
# the server's log. SERVER_ARGS adds
# server flags (5,000 nodes need `--cluster-cidr 10.0.0.0/8`), SERVER_ENV
# environment (e.g. `GLIBC_TUNABLES=` to turn the malloc cache off).
BIN=$1; LABEL=$2; NODES=${3:-5000}; PODS=${4:-50000}; PERF=$5
D=$(mktemp -d /tmp/sched-bench.XXXX)
env $SERVER_ENV "$BIN" server --data-dir "$D" --listen 127.0.0.1:26443 --etcd-listen 127.0.0.1:26444 --no-agent $SERVER_ARGS > "$D/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; cp "$D/server.log" "$LABEL.server.log"; rm -rf "$D"' EXIT
for _ in $(seq 1 120); do [ -f "$D/admin.kubeconfig" ] && curl -sk https://127.0.0.1:26443/healthz >/dev/null 2>&1 && break; sleep 0.5; done
sleep 3
echo "== $LABEL $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
( while kill -0 $PID 2>/dev/null; do echo "$(date +%T) rss $(awk '/VmRSS/ {print $2}' /proc/$PID/status) cpu $(awk '{print $14+$15}' /proc/$PID/stat)"; sleep 5; done ) > "$LABEL.rss" &
if [ -n "$PERF" ]; then perf record -F 99 --call-graph dwarf,16384 -p $PID -o "$LABEL.perf.data" > /dev/null 2>&1 & PERFPID=$!; fi
T0=$(awk '{print $14+$15}' /proc/$PID/stat)
"$BIN" bench scheduler --kubeconfig "$D/admin.kubeconfig" --nodes "$NODES" --pods "$PODS" 2>&1 | while IFS= read -r line; do
  case "$line" in
    *"every pod bound"*) echo "at bound: server CPU s $(( ($(awk '{print $14+$15}' /proc/$PID/stat)-T0)/100 )), VmHWM $(awk '/VmHWM/ {print $2}' /proc/$PID/status) kB";;
    *INFO*) ;;
    *) echo "$line";;
  esac
done
[ -n "$PERF" ] && kill -INT $PERFPID && wait $PERFPID
echo "server CPU s: $(( ($(awk '{print $14+$15}' /proc/$PID/stat)-T0)/100 )), VmHWM $(awk '/VmHWM/ {print $2}' /proc/$PID/status) kB"
echo "nodes marked unreachable: $(grep -c 'stopped posting' "$D/server.log")"
