#!/usr/bin/env python3
"""Run `skiff bench store` and attribute the Skiff servers' disk writes to
their threads: samples /proc/PID/task/*/io of every `skiff server` child
every 50 ms, keeps each thread's last write_bytes, and prints the sum per
thread name (digits stripped) divided by the puts, per server.
usage: bytes_by_thread.py SKIFF_BIN CLIENTS OPS (set SKIFF_PORTS=FIRST-LAST
to keep the servers' ports in a range of their own)"""
import os, re, subprocess, sys, time, collections
binp, clients, ops = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = subprocess.Popen([binp, "bench", "store", "--clients", clients, "--runs", "1",
                      "--ops", str(ops)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
last = {}  # (pid, tid) -> (comm, write_bytes)
def servers():
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit(): continue
        try:
            with open(f"/proc/{d}/stat") as f: st = f.read()
            ppid = int(st.rsplit(")", 1)[1].split()[1])
            if ppid != p.pid: continue
            with open(f"/proc/{d}/cmdline") as f: cl = f.read()
            if "server" in cl and "skiff" in cl: out.append(int(d))
        except OSError: pass
    return out
proc_total = {}
cpu = {}
tick = os.sysconf("SC_CLK_TCK")
while p.poll() is None:
    for pid in servers():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fs = f.read().rsplit(")", 1)[1].split()
                cpu[pid] = (int(fs[11]) + int(fs[12])) / tick
            with open(f"/proc/{pid}/io") as f:
                proc_total[pid] = int(re.search(r"write_bytes: (\d+)", f.read()).group(1))
            for t in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{t}/comm") as f: comm = f.read().strip()
                    with open(f"/proc/{pid}/task/{t}/io") as f:
                        wb = int(re.search(r"write_bytes: (\d+)", f.read()).group(1))
                    last[(pid, int(t))] = (comm, wb)
                except OSError: pass
        except OSError: pass
    time.sleep(0.05)
out, err = p.communicate()
print(out)
print("\n".join(l for l in err.splitlines() if "clients:" in l))
by = collections.Counter()
for (pid, tid), (comm, wb) in last.items():
    by[re.sub(r"[-_]?\d+$", "", comm)] += wb
n = max(len(proc_total), 1)
print(f"per server and put ({n} servers, {ops} puts): process total {sum(proc_total.values())/n/ops:.0f} B")
print(f"CPU seconds of the servers (sum, whole run incl. gets): {sum(cpu.values()):.2f}; per put+get {sum(cpu.values())/ops*1e3:.2f} ms")
for comm, wb in by.most_common():
    if wb: print(f"  {comm:<20} {wb/n/ops:8.0f} B")
