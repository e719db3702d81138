#!/usr/bin/env python3
"""Find the code a running `skiff agent` keeps using, for the linker's
symbol ordering file (`crates/skiff/agent-hot.order`, NOTES.md "Memory").

    hot_order.py collect PID SECONDS DIR   # as root; perf must be installed
    hot_order.py order DIR BIN OUT         # DIR from collect, BIN = the binary PID ran
    hot_order.py remap OLD_ORDER OLD_BIN NEW_BIN OUT

`collect` samples the process with `perf record` (cpu-clock, DWARF call
stacks: every frame counts as used) and, every 10 s, pages out the
binary's read-only mappings (`process_madvise(MADV_PAGEOUT)`) while
recording page faults, so code that runs too rarely to be sampled still
shows up as the function that faulted its page back in. `order` turns
both into symbol names, hottest first. `remap` carries an order file over
to a binary whose symbol hashes changed (same name without the hash and
the same size), which saves a collection after small changes.
"""
import bisect
import collections
import ctypes
import os
import re
import subprocess
import sys
import time

SYS_PIDFD_OPEN = 434
SYS_PROCESS_MADVISE = 440
MADV_PAGEOUT = 21


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def binary_mappings(pid):
    """(start, end, file offset, perms) of the read-only mappings of PID's binary."""
    exe = os.readlink(f"/proc/{pid}/exe")
    out = []
    for line in open(f"/proc/{pid}/maps"):
        f = line.split()
        if len(f) >= 6 and f[5] == exe and "w" not in f[1]:
            a, b = (int(x, 16) for x in f[0].split("-"))
            out.append((a, b, int(f[2], 16), f[1]))
    return out


def page_out(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    if pidfd < 0:
        sys.exit(f"pidfd_open({pid}) failed: errno {ctypes.get_errno()}")
    for a, b, _, _ in binary_mappings(pid):
        iov = IoVec(a, b - a)
        libc.syscall(SYS_PROCESS_MADVISE, pidfd, ctypes.byref(iov), 1, MADV_PAGEOUT, 0)
    os.close(pidfd)


def collect(pid, seconds, out):
    os.makedirs(out, exist_ok=True)
    with open(f"{out}/maps", "w") as f:
        for a, b, off, perms in binary_mappings(pid):
            f.write(f"{a:x} {b:x} {off:x} {perms}\n")
    perf = ["perf", "record", "-q", "-p", str(pid)]
    cpu = subprocess.Popen(perf + ["-F", "2999", "--call-graph", "dwarf,32768", "-o", f"{out}/cpu.data"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    faults = subprocess.Popen(perf + ["-e", "page-faults", "-c", "1", "-o", f"{out}/faults.data"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + seconds
    while time.time() < end:
        page_out(pid)
        time.sleep(10)
    for p in (cpu, faults):
        p.send_signal(2)
        p.wait()


def text_symbols(binary):
    """(address, size, name) of the functions in BIN, sorted by address."""
    nm = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True, check=True)
    syms = []
    for line in nm.stdout.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tTwW":
            syms.append((int(f[0], 16), int(f[1], 16), f[3]))
    syms.sort()
    return syms


def text_section(binary):
    """(virtual address, file offset) of BIN's .text section."""
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = re.search(r"\]\s+\.text\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if m:
            return int(m.group(1), 16), int(m.group(2), 16)
    sys.exit(f"{binary} has no .text section")


def order(d, binary, out):
    syms = text_symbols(binary)
    names = {n for _, _, n in syms}
    counts = collections.Counter()
    script = subprocess.run(["perf", "script", "-i", f"{d}/cpu.data", "-F", "ip,sym", "--no-demangle"],
                            capture_output=True, text=True).stdout
    for line in script.splitlines():
        f = line.split()
        if len(f) == 2 and f[1] in names:
            counts[f[1]] += 1
    ordered = [n for n, _ in counts.most_common()]
    # Page faults on the code mapping: the function whose page came back.
    text_va, text_off = text_section(binary)
    starts = [a for a, _, _ in syms]
    maps = [tuple(int(x, 16) for x in l.split()[:3]) for l in open(f"{d}/maps") if "x" in l.split()[3]]
    ips = subprocess.run(["perf", "script", "-i", f"{d}/faults.data", "-F", "ip"],
                         capture_output=True, text=True).stdout.split()
    faulted = set()
    for ip in ips:
        x = int(ip, 16)
        for a, b, off in maps:
            if a <= x < b:
                va = x - a + off - text_off + text_va
                i = bisect.bisect_right(starts, va) - 1
                if i >= 0 and va < syms[i][0] + max(syms[i][1], 1):
                    faulted.add(syms[i][2])
    seen = set(ordered)
    ordered += sorted(faulted - seen)
    size = {n: s for _, s, n in syms}
    with open(out, "w") as f:
        f.write("\n".join(ordered) + "\n")
    print(f"{len(ordered)} functions ({len(counts)} sampled, {len(faulted - seen)} more from page faults), "
          f"{sum(size[n] for n in ordered) / 1024:.0f} KiB of code")


def without_hash(name):
    return re.sub(r"\.llvm\.\d+$", "", re.sub(r"17h[0-9a-f]{16}E", "E", name))


def remap(old_order, old_bin, new_bin, out):
    old_size = {n: s for _, s, n in text_symbols(old_bin)}
    new = collections.defaultdict(list)
    new_size = {}
    for _, s, n in text_symbols(new_bin):
        new[(without_hash(n), s)].append(n)
        new_size[n] = s
    result, seen, missing = [], set(), 0
    for n in (l.strip() for l in open(old_order) if l.strip()):
        found = [n] if n in new_size else new.get((without_hash(n), old_size.get(n, -1)), [])
        missing += not found
        for x in found:
            if x not in seen:
                seen.add(x)
                result.append(x)
    with open(out, "w") as f:
        f.write("\n".join(result) + "\n")
    print(f"{len(result)} functions, {missing} not found, {sum(new_size[n] for n in result) / 1024:.0f} KiB of code")


if __name__ == "__main__":
    cmd = sys.argv[1:2]
    if cmd == ["collect"] and len(sys.argv) == 5:
        collect(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    elif cmd == ["order"] and len(sys.argv) == 5:
        order(*sys.argv[2:5])
    elif cmd == ["remap"] and len(sys.argv) == 6:
        remap(*sys.argv[2:6])
    else:
        sys.exit(__doc__)
