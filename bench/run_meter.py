#!/usr/bin/env python3
"""run_meter.py: runs one command and measures it the way issue 11's table does.

  run_meter.py [--poll-s 0.1] -- COMMAND [ARGS...]

Prints one JSON object on stdout:
  wall_s             launch to exit
  cpu_s              user + system CPU-s of the command and every descendant it reaped
                     (getrusage(RUSAGE_CHILDREN); `greenfed run` waits for its clients, so
                     their CPU time is in it)
  top_peak_rss_kib   peak RSS (VmHWM) of the command's own process: the coordinator for
                     `greenfed run` (it runs the coordinator in a thread) and `simulate`
  child_peak_rss_kib the largest VmHWM among its descendants (the client processes), read
                     from /proc every --poll-s while they live; null when there were none
  children           number of descendant processes seen
  rc                 the command's exit status
The command's stdout and stderr go to this script's stderr.
"""
import json
import os
import resource
import subprocess
import sys
import time


def hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def children_of(root):
    """Descendants of root, from /proc/*/stat (ppid links)."""
    parent = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
            parent[int(name)] = ppid
        except (OSError, ValueError, IndexError):
            continue
    out, frontier = set(), {root}
    while frontier:
        nxt = {p for p, pp in parent.items() if pp in frontier and p not in out}
        out |= nxt
        frontier = nxt
    return out


def main():
    args = sys.argv[1:]
    poll_s = 0.1
    if len(args) >= 2 and args[0] == "--poll-s":
        poll_s = float(args[1])
        args = args[2:]
    if not args or args[0] != "--" or len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = args[1:]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=sys.stderr, stderr=sys.stderr)
    top_hwm, child_hwm, seen = 0, {}, set()
    while proc.poll() is None:
        h = hwm_kib(proc.pid)
        if h is not None:
            top_hwm = max(top_hwm, h)
        for c in children_of(proc.pid):
            seen.add(c)
            h = hwm_kib(c)
            if h is not None:
                child_hwm[c] = max(child_hwm.get(c, 0), h)
        time.sleep(poll_s)
    wall_s = time.monotonic() - start
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "wall_s": round(wall_s, 3),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
        "top_peak_rss_kib": top_hwm or None,
        "child_peak_rss_kib": max(child_hwm.values()) if child_hwm else None,
        "children": len(seen),
        "rc": proc.returncode,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
