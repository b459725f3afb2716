#!/usr/bin/env python3
"""Churn soak test (ctest integration/churn_soak) and driver of bench/bench_rss.sh.

Real processes on loopback: one `greenfed coordinator` and --clients `greenfed client`
processes on synthetic IDX data (greenfed_make_synthetic). While the run is in its first
rounds, a seeded supervisor SIGKILLs random clients and restarts them after a random pause
(--max-kills kills at seeded rounds before R - --quiet-rounds, so the run ends by itself);
the last --permanent-kills of them are never restarted, so the federation ends smaller than
--num-clients and the coordinator must carry on with the clients it has.
Every client slot restarts under the same --client-id, as a rebooted device would, so the
coordinator sees rejoins under new connections as well as silent deaths.

Asserts, after the coordinator exits:
  * the coordinator exits 0 within --timeout-s (else: FAIL "hung", with its log tail);
  * rounds.csv has rounds 1..R, each exactly once; each row has
    clients_succeeded + clients_failed <= clients_sampled and succeeded >= min_fit_clients;
  * nodes.csv has one row per (round, node_id, source) and only finite numbers;
  * summary.json energy totals equal the sums over nodes.csv (compute, compute x PUE, comm
    of clients), and rounds.csv energy_j equals the per-round sum of compute_j.
With --rss it also samples the coordinator's VmRSS/VmHWM (/proc/PID/status) and prints them
at round 1 and at the last round seen, and whether VmRSS stayed within --rss-flat-pct.

Usage: churn_soak.py --greenfed BIN --make-synthetic BIN [--rounds 30] [--clients 4]
                     [--seed 1] [--max-kills 8] [--permanent-kills 1] [--timeout-s 80] [--no-churn] [--rss]
                     [--coordinator-arg ARG]... [--client-arg ARG]... [--keep]
Exit: 0 pass, 1 fail, 2 bad usage.
"""
import argparse
import csv
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PROG = "churn_soak.py"


class Failure(Exception):
    pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count_rounds(run_dir):
    try:
        with open(os.path.join(run_dir, "rounds.csv")) as f:
            return max(0, sum(1 for line in f if line.strip()) - 1)
    except OSError:
        return 0


def proc_status_kb(pid):
    """VmRSS and VmHWM of pid in kB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return None


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


class Slot:
    """One client position: its process, its log, and when to restart it."""

    def __init__(self, k):
        self.k = k
        self.proc = None
        self.starts = 0
        self.restart_at = None  # monotonic time of a pending restart
        self.exits = []         # (return code, killed by us)
        self.gone = False       # killed for good (--permanent-kills)


def check_run_dir(run_dir, rounds, min_fit):
    with open(os.path.join(run_dir, "rounds.csv")) as f:
        rows = list(csv.DictReader(f))
    seen = [int(r["round"]) for r in rows]
    if sorted(seen) != list(range(1, rounds + 1)) or len(set(seen)) != len(seen):
        raise Failure(f"rounds.csv rounds are {seen}, expected 1..{rounds} each once")
    for r in rows:
        sampled, ok, failed = int(r["clients_sampled"]), int(r["clients_succeeded"]), int(r["clients_failed"])
        if ok + failed > sampled:
            raise Failure(f"round {r['round']}: succeeded {ok} + failed {failed} > sampled {sampled}")
        if ok < min_fit:
            raise Failure(f"round {r['round']}: succeeded {ok} < min_fit_clients {min_fit}")
    with open(os.path.join(run_dir, "nodes.csv")) as f:
        nodes = list(csv.DictReader(f))
    if not nodes:
        raise Failure("nodes.csv has no rows")
    keys = [(n["round"], n["node_id"], n["source"]) for n in nodes]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise Failure(f"nodes.csv repeats (round, node, source) {sorted(dupes)[:5]}")
    numeric = ["pue", "wall_s", "cpu_s", "train_j", "evaluate_j", "aggregate_j", "idle_j", "compute_j", "comm_j",
               "bytes_sent", "bytes_received"]
    for n in nodes:
        for col in numeric:
            v = float(n[col])
            if not math.isfinite(v) or v < 0:
                raise Failure(f"nodes.csv round {n['round']} {n['node_id']}: {col}={n[col]}")
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    compute_j = sum(float(n["compute_j"]) for n in nodes)
    compute_pue_j = sum(float(n["compute_j"]) * float(n["pue"]) for n in nodes)
    comm_j = sum(float(n["comm_j"]) for n in nodes if n["role"] == "client")
    e = summary["energy"]
    for name, got_wh, want_j in [("compute_wh", e["compute_wh"], compute_j),
                                 ("compute_pue_wh", e["compute_pue_wh"], compute_pue_j),
                                 ("comm_wh", e["comm_wh"], comm_j)]:
        if not math.isclose(got_wh * 3600.0, want_j, rel_tol=1e-6, abs_tol=1e-9):
            raise Failure(f"summary.json energy.{name} = {got_wh * 3600.0} J, nodes.csv sums to {want_j} J")
    if summary["rounds"] != rounds:
        raise Failure(f"summary.json rounds {summary['rounds']}, expected {rounds}")
    for r in rows:
        want = sum(float(n["compute_j"]) for n in nodes if n["round"] == r["round"])
        if not math.isclose(float(r["energy_j"]), want, rel_tol=1e-6, abs_tol=1e-9):
            raise Failure(f"rounds.csv round {r['round']} energy_j {r['energy_j']} != nodes.csv sum {want}")
    return rows, nodes


def main():
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--greenfed", required=True)
    ap.add_argument("--make-synthetic", required=True)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-kills", type=int, default=8)
    ap.add_argument("--quiet-rounds", type=int, default=4, help="no kills in the last N rounds")
    ap.add_argument("--permanent-kills", type=int, default=1,
                    help="the last N of the kills are not restarted: the federation shrinks for good")
    ap.add_argument("--timeout-s", type=float, default=80)
    ap.add_argument("--no-churn", action="store_true")
    ap.add_argument("--rss", action="store_true", help="report coordinator VmRSS/VmHWM")
    ap.add_argument("--rss-flat-pct", type=float, default=5.0)
    ap.add_argument("--coordinator-arg", action="append", default=[])
    ap.add_argument("--client-arg", action="append", default=[])
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    for b in (args.greenfed, args.make_synthetic):
        if not os.access(b, os.X_OK):
            print(f"{PROG}: {b} is not executable", file=sys.stderr)
            return 2
    if args.rounds < args.quiet_rounds + 2 or args.clients < 3:
        print(f"{PROG}: need --rounds >= quiet-rounds + 2 and --clients >= 3", file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="greenfed-churn-")
    data, run_dir = os.path.join(work, "data"), os.path.join(work, "run")
    rng = random.Random(args.seed)
    min_fit = 2
    slots = [Slot(k) for k in range(args.clients)]
    coord = None
    kills = 0
    started = time.monotonic()
    rss_first = rss_mid = rss_last = None  # (round, VmRSS kB, VmHWM kB)
    try:
        subprocess.run([args.make_synthetic, data, "--train", "1200", "--test", "200", "--seed", str(args.seed)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        # Where the binary knows CURVE (--insecure in its help), the soak runs in plaintext on
        # loopback: churn is under test here, not authentication.
        help_text = subprocess.run([args.greenfed, "coordinator", "--help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True).stdout
        plain = ["--insecure"] if "--insecure" in help_text else []
        # Target 1.0 with a tiny learning rate: the run cannot stop early, it ends at max rounds.
        coord_cmd = [args.greenfed, "coordinator", f"--bind={endpoint}", f"--num-clients={args.clients}",
                     f"--min-fit-clients={min_fit}", f"--max-rounds={args.rounds}", "--target-accuracy=1.0",
                     "--lr=0.00001", "--model=mlp", "--heartbeat-timeout-s=2", "--round-timeout-s=6",
                     "--max-test-examples=200", f"--seed={args.seed}", f"--data-dir={data}",
                     f"--run-dir={run_dir}", "--country=FRA"] + plain + args.coordinator_arg
        coord_log = os.path.join(work, "coordinator.log")
        coord = subprocess.Popen(coord_cmd, stdout=open(coord_log, "w"), stderr=subprocess.STDOUT)

        def start(slot):
            slot.starts += 1
            log = open(os.path.join(work, f"client-{slot.k}.{slot.starts}.log"), "w")
            slot.proc = subprocess.Popen(
                [args.greenfed, "client", f"--connect={endpoint}", f"--data-dir={data}",
                 f"--client-id=churn-{slot.k}", "--max-train-examples=300", "--max-test-examples=100",
                 "--connect-timeout-s=30", "--coordinator-timeout-s=10", "--country=DEU"] + plain + args.client_arg,
                stdout=log, stderr=subprocess.STDOUT)
            slot.restart_at = None

        for s in slots:
            start(s)
        # Kill k happens once kill_rounds[k] rounds are in the books, so churn spreads over the
        # run instead of piling up while it stalls; the last --permanent-kills are never undone.
        kill_rounds = [] if args.no_churn else sorted(
            rng.randint(1, args.rounds - args.quiet_rounds) for _ in range(args.max_kills))
        next_kill = 0.0
        deadline = started + args.timeout_s
        while coord.poll() is None:
            now = time.monotonic()
            if now > deadline:
                raise Failure(f"coordinator hung: {count_rounds(run_dir)}/{args.rounds} rounds after "
                              f"{args.timeout_s:.0f} s, {kills} kills "
                              f"({sum(s.gone for s in slots)} for good)\n--- coordinator log tail ---\n"
                              + tail(coord_log))
            done = count_rounds(run_dir)
            if args.rss:
                st = proc_status_kb(coord.pid)
                if st and done >= 1:
                    if rss_first is None:
                        rss_first = (done,) + st
                    if rss_mid is None and done >= args.rounds // 2:
                        rss_mid = (done,) + st
                    rss_last = (done,) + st
            if kills < len(kill_rounds) and done >= kill_rounds[kills] and now >= next_kill:
                live = [s for s in slots if s.proc and s.proc.poll() is None]
                if live:
                    victim = rng.choice(live)
                    victim.proc.send_signal(signal.SIGKILL)
                    victim.proc.wait()
                    victim.exits.append((victim.proc.returncode, True))
                    victim.proc = None
                    kills += 1
                    permanent = kills > args.max_kills - args.permanent_kills
                    victim.restart_at = None if permanent else now + rng.uniform(0.0, 3.0)
                    victim.gone = permanent
                next_kill = now + rng.uniform(0.3, 1.5)
            for s in slots:
                # A client that ended on its own before the run is over (rejected, gave up)
                # is restarted like a killed one; one that ended with the run stays down.
                if s.proc is not None and s.proc.poll() is not None:
                    s.exits.append((s.proc.returncode, False))
                    s.proc = None
                    if done < args.rounds and not s.gone:
                        s.restart_at = now + rng.uniform(0.0, 1.0)
                if s.proc is None and s.restart_at is not None and now >= s.restart_at:
                    start(s)
            time.sleep(0.02)
        wall_s = time.monotonic() - started
        rc = coord.returncode
        if rc != 0:
            raise Failure(f"coordinator exited {rc}\n--- coordinator log tail ---\n" + tail(coord_log))
        rows, nodes = check_run_dir(run_dir, args.rounds, min_fit)
        restarts = sum(s.starts - 1 for s in slots)
        self_exits = [(s.k, rc) for s in slots for rc, killed in s.exits if not killed and rc != 0]
        print(f"{PROG}: PASS {args.rounds} rounds in {wall_s:.1f} s with {kills} kills "
              f"({sum(s.gone for s in slots)} for good), {restarts} restarts "
              f"(seed {args.seed}); client exits on their own with rc!=0: {self_exits or 'none'}; "
              f"failed fits {sum(int(r['clients_failed']) for r in rows)}; nodes.csv rows {len(nodes)}")
        if args.rss:
            if rss_first is None or rss_last is None:
                raise Failure("no /proc samples of the coordinator")
            growth = 100.0 * (rss_last[1] - rss_first[1]) / rss_first[1]
            flat = abs(growth) <= args.rss_flat_pct
            mid = f"{rss_mid[1]} kB at round {rss_mid[0]}, " if rss_mid else ""
            print(f"rss: coordinator VmRSS {rss_first[1]} kB at round {rss_first[0]}, {mid}{rss_last[1]} kB at round "
                  f"{rss_last[0]} ({growth:+.1f}%), VmHWM {rss_first[2]} -> {rss_last[2]} kB: "
                  f"{'flat' if flat else 'NOT flat'} (within {args.rss_flat_pct:g}%)")
        return 0
    except Failure as f:
        print(f"{PROG}: FAIL: {f}", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        for s in slots:
            if s.proc and s.proc.poll() is None:
                try:
                    s.proc.wait(timeout=10 if coord and coord.poll() is not None else 0.1)
                except subprocess.TimeoutExpired:
                    s.proc.kill()
                    s.proc.wait()
        if coord and coord.poll() is None:
            coord.kill()
            coord.wait()
        if args.keep:
            print(f"{PROG}: work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
