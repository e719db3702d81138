#!/bin/bash
# Usage: bench_startup_cgroups.sh BIN LABEL [RUNS]   (as root; NOTES.md, #5)
# Starts server (--no-agent) + separate agent, each in its own cpuacct cgroup,
# moves the agent's containerd into a third, runs `skiff bench startup` RUNS times,
# reports CPU-s per component per run. Cleans up by recorded PIDs.
# Env: SERVER_BIN (a copy of BIN, so the agent's RssFile is its own), STEADY=1
# (then 50 idle pods: CPU over 30 s and the agent's smaps), HOLD=1, UP_ONLY=1,
# AGENT_ENV (e.g. SKIFF_AGENT_NO_RELIST=1), AGENT_ARGS, AGENT_LOG, BENCH_DIR,
# BENCH_PORT. Pod CIDR 10.199.140.0/24, services 10.199.141.0/24, bridge skah0.
set -u
BIN=$1; LABEL=$2; RUNS=${3:-3}
ROOT=${BENCH_DIR:-/var/tmp/skiff-bench-startup}/run-$LABEL
CG=/sys/fs/cgroup/cpuacct
rm -rf $ROOT; mkdir -p $ROOT
for c in srv agt ctd bench; do mkdir -p $CG/skiffbench-$c; done
PORT=${BENCH_PORT:-25300}; APORT=$((PORT + 1))
SPID=; APID=
cleanup() {
  [ -n "$APID" ] && kill -TERM $APID 2>/dev/null && sleep 3
  # containerd and shims of our socket
  for p in $(pgrep -f "$ROOT/node" ); do kill -9 $p 2>/dev/null; done
  [ -n "$SPID" ] && kill -TERM $SPID 2>/dev/null
  sleep 1
  grep " $ROOT" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  ip link del skah0 2>/dev/null
}
trap cleanup EXIT
sh -c "echo \$\$ > $CG/skiffbench-srv/cgroup.procs; exec ${SERVER_BIN:-$BIN} server --no-agent --data-dir $ROOT/server --listen 127.0.0.1:$PORT --etcd-listen 127.0.0.1:0 --cluster-cidr 10.199.140.0/24 --node-cidr-mask-size 24 --service-cidr 10.199.141.0/24" > $ROOT/server.log 2>&1 &
SPID=$!
for i in $(seq 120); do [ -f $ROOT/server/node-token ] && [ -f $ROOT/server/admin.kubeconfig ] && break; sleep 1; done
# Drop the agent binary's cached pages (when no other process maps them), so
# its RssFile counts what the agent itself faults in.
python3 -c "import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" $BIN
sh -c "echo \$\$ > $CG/skiffbench-agt/cgroup.procs; exec env RUST_LOG=${AGENT_LOG:-info} ${AGENT_ENV:-} $BIN agent --server https://127.0.0.1:$PORT --token-file $ROOT/server/node-token --data-dir $ROOT/node --node-name agenth --node-ip 127.0.0.1 --agent-port $APORT --cni-bridge skah0 --pod-cidr 10.199.140.0/24 --eviction-hard '' --image-gc-high-threshold 100 ${AGENT_ARGS:-}" > $ROOT/agent.log 2>&1 &
APID=$!
echo "server $SPID agent $APID"
CPID=
for i in $(seq 120); do CPID=$(pgrep -P $APID -x containerd); [ -n "$CPID" ] && break; sleep 0.5; done
echo $CPID > $CG/skiffbench-ctd/cgroup.procs
echo "containerd $CPID"
K="kubectl --kubeconfig $ROOT/server/admin.kubeconfig"
for i in $(seq 120); do $K get nodes 2>/dev/null | grep -q " Ready" && break; sleep 1; done
$K get nodes
sleep 5
echo $$ > $CG/skiffbench-bench/cgroup.procs
echo "SPID=$SPID APID=$APID CPID=$CPID ROOT=$ROOT" > $ROOT/env
if [ -n "${UP_ONLY:-}" ]; then echo "up; touch $ROOT/release to stop"; while [ ! -f $ROOT/release ]; do sleep 2; done; echo $$ > $CG/cgroup.procs; exit 0; fi
u() { echo $(( $(cat $CG/skiffbench-$1/cpuacct.usage) )); }
# containerd's own CPU (self) and that of the children it waited for (CNI
# plugins, `shim start`), in clock ticks
cself() { awk '{print $14+$15}' /proc/$CPID/stat; }
cchild() { awk '{print $16+$17}' /proc/$CPID/stat; }
# idle CPU over 20 s with no pods
a0=$(u agt); c0=$(u ctd); s0=$(u srv); sleep 20
echo "idle-0pods 20s: agent $(( ($(u agt)-a0)/1000000 )) ms containerd $(( ($(u ctd)-c0)/1000000 )) ms server $(( ($(u srv)-s0)/1000000 )) ms"
for r in $(seq $RUNS); do
  a0=$(u agt); c0=$(u ctd); s0=$(u srv); b0=$(u bench); t0=$(date +%s.%N); cs0=$(cself); cc0=$(cchild)
  $BIN bench startup --kubeconfig $ROOT/server/admin.kubeconfig --pods 100 --rate 20 --rss-pods 50 --agent-pid $APID > $ROOT/bench-$r.txt 2>&1
  t1=$(date +%s.%N)
  sleep 5
  echo "run $r: wall $(echo "$t1-$t0"|bc) s; CPU-s agent $(echo "scale=2;($(u agt)-$a0)/10^9"|bc) containerd $(echo "scale=2;($(u ctd)-$c0)/10^9"|bc) server $(echo "scale=2;($(u srv)-$s0)/10^9"|bc) bench $(echo "scale=2;($(u bench)-$b0)/10^9"|bc)"
  echo "   containerd self $(echo "scale=2;($(cself)-$cs0)/100"|bc) CPU-s, its waited children (CNI, shim start) $(echo "scale=2;($(cchild)-$cc0)/100"|bc) CPU-s"
  grep -A3 "^| p50\|RSS" $ROOT/bench-$r.txt | grep "^| [0-9]" | head -1
  grep "^| \(100\|50\) " $ROOT/bench-$r.txt | tr '\n' ' '; echo
  grep -E "Error|error" $ROOT/bench-$r.txt | head -3
  sleep 10
done
if [ -n "${STEADY:-}" ]; then
  # 50 pods running: idle CPU and memory
  $K create ns steady >/dev/null
  for i in $(seq 50); do echo "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"s$i\",\"namespace\":\"steady\"},\"spec\":{\"terminationGracePeriodSeconds\":1,\"containers\":[{\"name\":\"c\",\"image\":\"skiff.local/busybox:1\",\"command\":[\"sleep\",\"3600\"]}]}}"; done | $K create -f - >/dev/null
  for i in $(seq 120); do [ "$($K -n steady get pods --no-headers | grep -c Running)" = 50 ] && break; sleep 1; done
  sleep 15
  a0=$(u agt); c0=$(u ctd); s0=$(u srv); cs0=$(cself); sleep 30
  echo "steady-50pods 30s: agent $(( ($(u agt)-a0)/1000000 )) ms containerd $(( ($(u ctd)-c0)/1000000 )) ms (self $(( ($(cself)-cs0)*10 )) ms) server $(( ($(u srv)-s0)/1000000 )) ms"
  grep -E "VmRSS|RssAnon|RssFile|Threads" /proc/$APID/status
  grep -E "^Pss:|Pss_File|Pss_Anon" /proc/$APID/smaps_rollup
  cat /proc/$APID/smaps_rollup > $ROOT/smaps_rollup-50
  cp /proc/$APID/smaps $ROOT/smaps-50
  [ -n "${HOLD:-}" ] && { echo "holding; touch $ROOT/release"; while [ ! -f $ROOT/release ]; do sleep 2; done; }
  $K delete ns steady --wait=true >/dev/null 2>&1
fi
echo $$ > $CG/cgroup.procs
