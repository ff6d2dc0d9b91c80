#!/usr/bin/env python3
"""Measure SSB on a Ballista cluster of this machine, then project it to larger clusters.

Two cores cannot show a cluster's speed-up, so this script measures what one machine can
(per-stage task times, shuffle bytes, scheduler and coordinator overhead) and models the rest.
SCALING.md explains the model and quotes its output.

    # 1. measure: SSB at --sf on clusters of 1 and 2 executors (the warehouse must hold the
    #    suite: `strata bench load --suite ssb --sf 10`)
    benches/scaling.py measure --sf 10 --out benches/results/scaling-sf10.json
    # 2. the measurements as a table, and SF 100 and 1000 projected on 4..64 executors
    benches/scaling.py table benches/results/scaling-sf10.json
    benches/scaling.py model benches/results/scaling-sf10.json

Only the standard library is used.
"""

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QUERIES = ["q1.1", "q1.2", "q1.3", "q2.1", "q2.2", "q2.3", "q3.1", "q3.2", "q3.3", "q3.4",
           "q4.1", "q4.2", "q4.3"]


# --------------------------------------------------------------------------------------------
# measure
# --------------------------------------------------------------------------------------------

def start(strata, args, log):
    """Starts `strata <args>`; returns the process and the address it announced."""
    process = subprocess.Popen([strata, "--log-filter", "ballista_executor=info,warn", *args],
                               stdout=subprocess.PIPE, stderr=log, text=True)
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"strata {' '.join(args)} did not start")
    return process, line.split()[-1]


DURATION = re.compile(r"Finished task : \[TID ([^/\]]+)/(\d+)\.\d+/[^\]]*\] in ([0-9.]+)(ns|µs|us|ms|s)\b")
UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def task_times(log_paths):
    """{job: {stage: [seconds per task]}} from the executors' "Finished task" lines."""
    jobs = {}
    for path in log_paths:
        with open(path, errors="replace") as f:
            for line in f:
                m = DURATION.search(line)
                if m:
                    job, stage, value, unit = m.groups()
                    jobs.setdefault(job, {}).setdefault(int(stage), []).append(
                        float(value) * UNITS[unit])
    return jobs


JOB = re.compile(r"^(\S+): queued (\d+) ms, ran (\d+) ms, (\d+) stages, (\d+) tasks, "
                 r"(\d+) bytes shuffled, (\d+) rows")
STAGE = re.compile(r"^(\d+) tasks, compute ([^,]+), shuffle write (\d+) bytes, "
                   r"shuffle fetch (\d+) bytes, store read (\d+) bytes")


def explain_analyze(strata, warehouse, url, sql, settings):
    """Runs EXPLAIN ANALYZE of `sql` on the cluster; returns (wall seconds, job, stages)."""
    command = [strata, "--warehouse", warehouse, "--cluster", url, "--format", "json"]
    for s in settings:
        command += ["--set", s]
    t0 = time.perf_counter()
    out = subprocess.run(command + ["-c", f"EXPLAIN ANALYZE {sql}"], capture_output=True,
                         text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"EXPLAIN ANALYZE failed: {out.stderr}")
    rows = json.loads(out.stdout)
    job, stages = None, {}
    for row in rows:
        kind, text = row["plan_type"], row["plan"]
        if kind == "job":
            m = JOB.match(text)
            if m is None:
                raise SystemExit(f"unexpected job line: {text}")
            job = {"id": m[1], "queued_ms": int(m[2]), "ran_ms": int(m[3]),
                   "stages": int(m[4]), "tasks": int(m[5]), "shuffle_bytes": int(m[6]),
                   "rows": int(m[7])}
        elif kind.startswith("stage "):
            m = STAGE.match(text.splitlines()[0])
            if m is None:
                raise SystemExit(f"unexpected stage line: {text.splitlines()[0]}")
            stages[int(kind.split()[1])] = {"tasks": int(m[1]),
                                            "shuffle_write_bytes": int(m[3]),
                                            "shuffle_fetch_bytes": int(m[4]),
                                            "store_read_bytes": int(m[5])}
    if job is None:
        raise SystemExit(f"no job line: the query ran locally?\n{out.stdout}")
    return wall, job, stages


def query_text(name):
    return open(os.path.join(HERE, "queries", "ssb", f"{name}.sql")).read().strip().rstrip(";")


def measure_cluster(strata, warehouse, executors, slots, runs, work):
    """SSB on a scheduler and `executors` executors of `slots` task slots each."""
    logs, processes = [], []
    scheduler, address = start(strata, ["cluster", "scheduler", "--bind", "127.0.0.1:0"],
                               subprocess.DEVNULL)
    processes.append(scheduler)
    try:
        for i in range(executors):
            path = os.path.join(work, f"executor-{executors}x{slots}-{i}.log")
            log = open(path, "w")
            logs.append(path)
            p, _ = start(strata, ["cluster", "executor", "--scheduler", address,
                                  "--concurrent-tasks", str(slots),
                                  "--work-dir", os.path.join(work, f"shuffle-{i}")], log)
            processes.append(p)
        time.sleep(4)  # executors register with their first heartbeat
        url = f"df://{address}"
        settings = ["strata.cluster_min_files=0", "strata.cluster_job_timeout=30 minutes"]
        results = {}
        # The overhead of jobs that read next to nothing (each task stops after its first
        # batch): one over the one file of dwdate, one over all of lineorder's.
        empty = "SELECT {} FROM {} LIMIT 1"
        small_runs = [explain_analyze(strata, warehouse, url, empty.format("d_datekey", "dwdate"),
                                      settings) for _ in range(runs)]
        empty_runs = [explain_analyze(strata, warehouse, url,
                                      empty.format("lo_orderkey", "lineorder"), settings)
                      for _ in range(runs)]
        for name in QUERIES:
            sql = query_text(name)
            results[name] = [explain_analyze(strata, warehouse, url, sql, settings)
                             for _ in range(runs)]
            walls = [w for w, _, _ in results[name]]
            print(f"  {executors}x{slots} {name}: median {statistics.median(walls):.3f} s",
                  flush=True)
    finally:
        for p in processes:
            p.kill()
            p.wait()
    times = task_times(logs)

    def summary(run):
        wall, job, stages = run
        per_stage = {}
        for stage, figures in stages.items():
            tasks = times.get(job["id"], {}).get(stage, [])
            per_stage[str(stage)] = {
                **figures,
                "task_seconds": sorted(tasks),
                "task_seconds_sum": sum(tasks),
                "task_seconds_max": max(tasks, default=0.0),
            }
        coordinator = wall - (job["queued_ms"] + job["ran_ms"]) / 1000
        return {"wall_s": wall, "job": job, "stages": per_stage,
                "coordinator_s": coordinator}

    return {
        "executors": executors,
        "slots": slots,
        "empty_job": [summary(r) for r in empty_runs],
        "small_job": [summary(r) for r in small_runs],
        "queries": {name: [summary(r) for r in runs_] for name, runs_ in results.items()},
    }


def local_runs(strata, warehouse, runs):
    """SSB in one process (no cluster), for comparison: wall seconds per run."""
    out = {}
    for name in QUERIES:
        walls = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([strata, "--warehouse", warehouse, "--format", "csv", "-c",
                            query_text(name)], check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
        out[name] = walls
    return out


def startup(strata, warehouse, runs):
    """Seconds for `strata -c "SELECT 1"`: process start and opening the warehouse, which
    every measured wall time includes and a long-lived coordinator (`strata serve`) pays once."""
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([strata, "--warehouse", warehouse, "-c", "SELECT 1"], check=True,
                       capture_output=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def table_figures(strata, warehouse):
    out = subprocess.run([strata, "--warehouse", warehouse, "--format", "json", "-c",
                          "SELECT table_name, sum(file_count) AS files, sum(row_count) AS rows_, "
                          "sum(size_bytes) AS bytes FROM system.partitions GROUP BY table_name"],
                         capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    return {r["table_name"]: {"files": r["files"], "rows": r["rows_"], "bytes": r["bytes"]}
            for r in rows}


def measure(args):
    strata = os.path.abspath(args.strata)
    warehouse = args.warehouse or os.path.expanduser(
        f"~/.cache/strata-bench/strata/ssb-sf{args.sf:g}")
    if not os.path.isdir(warehouse):
        raise SystemExit(f"no warehouse at {warehouse}: run `strata bench load --suite ssb "
                         f"--sf {args.sf:g}` first")
    with tempfile.TemporaryDirectory() as work:
        report = {
            "sf": args.sf,
            "machine": {"cores": os.cpu_count()},
            "tables": table_figures(strata, warehouse),
            "startup_s": startup(strata, warehouse, 5),
            "local": local_runs(strata, warehouse, args.runs),
            "clusters": [measure_cluster(strata, warehouse, 1, 2, args.runs, work),
                         measure_cluster(strata, warehouse, 2, 1, args.runs, work)],
        }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out}")


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------

def median_run(runs):
    """The run whose wall time is the median of the hot runs (the first run is cold)."""
    hot = runs[1:] or runs
    return sorted(hot, key=lambda r: r["wall_s"])[len(hot) // 2]


def table(args):
    """The measurements as SCALING.md's table: per query, the hot medians and the figures of
    the median run on each cluster."""
    with open(args.measurements) as f:
        m = json.load(f)
    by_shape = {(c["executors"], c["slots"]): c for c in m["clusters"]}
    one, two = by_shape[(1, 2)], by_shape[(2, 1)]
    print("| query | one process s | cluster 1×2 s | cluster 2×1 s | job ran ms | coordinator ms "
          "| stages / tasks | fact-stage task-seconds | store read MB | shuffle write KB "
          "| fetched between executors KB (2×1) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    columns = ([], [], [])
    for name in QUERIES:
        local = statistics.median(m["local"][name][1:] or m["local"][name])
        run, other = median_run(one["queries"][name]), median_run(two["queries"][name])
        stages = run["stages"].values()
        fact = max(stages, key=lambda s: s["store_read_bytes"])
        fetched = sum(s["shuffle_fetch_bytes"] for s in other["stages"].values())
        job = run["job"]
        for column, value in zip(columns, (local, run["wall_s"], other["wall_s"])):
            column.append(value)
        print(f"| {name} | {local:.3f} | {run['wall_s']:.3f} | {other['wall_s']:.3f} "
              f"| {job['ran_ms']} | {run['coordinator_s'] * 1000:.0f} "
              f"| {job['stages']} / {job['tasks']} | {fact['task_seconds_sum']:.2f} "
              f"| {sum(s['store_read_bytes'] for s in stages) / 1e6:.0f} "
              f"| {job['shuffle_bytes'] / 1e3:.0f} | {fetched / 1e3:.0f} |")
    means = " | ".join(f"**{geomean(c):.3f}**" for c in columns)
    print(f"| **geomean** | {means} | | | | | | | |")


def project(query, sf0, sf, n, a):
    """Seconds for one query measured at sf0, at scale `sf` on `n` executors.

    Per stage: scan stages (those that read the store) grow with the data, in work and in
    tasks (files are packed into tasks of strata.cluster_task_bytes); the stages after a
    shuffle work on SSB's partial aggregates, whose size the scale does not change (unless
    --shuffle-scales). A stage takes the longest of its compute (waves of tasks over the
    executors' slots, each task as long as measured per task), its store reads and its shuffle
    over the executors' bandwidth, plus the scheduler's time for its tasks and a launch
    latency. Stages run one after another; the coordinator plans and fetches the result.
    """
    k = sf / sf0
    slots = n * a.cores
    total = a.coordinator_s + a.coordinator_per_file_s * query["files"] * k
    fact = max(query["stages"].values(), key=lambda s: s["store_read_bytes"])
    if fact["store_read_bytes"] == 0:
        fact = None
    for stage in query["stages"].values():
        scan = stage["store_read_bytes"] > 0
        grow = k if (scan or a.shuffle_scales) else 1.0
        measured_tasks = max(1, stage["tasks"])
        if stage is fact:
            # The fact table's files packed into tasks of strata.cluster_task_bytes.
            tasks = max(1, math.ceil(query["fact_bytes"] * k / a.task_bytes))
        elif scan:
            tasks = max(measured_tasks, math.ceil(measured_tasks * grow))
        else:
            tasks = measured_tasks
        work = stage["task_seconds_sum"] * grow * a.core_ratio
        waves = math.ceil(tasks / slots)
        compute = waves * (work / tasks)
        store = stage["store_read_bytes"] * grow / (min(n, tasks) * a.store_gbps * 1e9 / 8)
        shuffle = stage["shuffle_write_bytes"] * grow / (n * a.network_gbps * 1e9 / 8)
        scheduling = tasks * a.task_overhead_s / a.scheduler_threads
        total += max(compute, store, shuffle) + scheduling + a.stage_latency_s
    return total


def model(args):
    report = json.load(open(args.measurements))
    sf0 = report["sf"]
    cluster = report["clusters"][0]  # 1 executor x 2 slots: every task's time without sharing
    def ran(runs):
        return statistics.median(r["job"]["ran_ms"] / 1000 for r in runs[1:] or runs)
    small, empty = cluster["small_job"], cluster["empty_job"]
    # A job over one file: the latency of its stages. A job over every lineorder file: the
    # time each task more adds on this cluster (scheduling, launch, opening the file).
    measured_latency = ran(small) / small[0]["job"]["stages"]
    extra_tasks = empty[0]["job"]["tasks"] - small[0]["job"]["tasks"]
    measured_task_overhead = max(0.0, ran(empty) - ran(small)) / max(1, extra_tasks)
    coordinator = statistics.median(
        r["coordinator_s"] for runs in cluster["queries"].values() for r in (runs[1:] or runs)
    ) - report.get("startup_s", 0.0)
    a = args
    if a.task_overhead_s is None:
        a.task_overhead_s = measured_task_overhead
    if a.stage_latency_s is None:
        a.stage_latency_s = measured_latency
    if a.coordinator_s is None:
        a.coordinator_s = coordinator
    files = report["tables"].get("lineorder", {}).get("files", 0)
    queries = {}
    for name, runs in cluster["queries"].items():
        run = median_run(runs)
        queries[name] = {"stages": run["stages"], "files": files, "measured": run["wall_s"],
                         "fact_bytes": report["tables"].get("lineorder", {}).get("bytes", 0)}

    print(f"# SSB projection from SF {sf0:g} measurements ({args.measurements})")
    print()
    print("Assumptions: executors of {c} cores, each core as fast as this machine's; scan "
          "tasks of {b:.0f} MiB; object "
          "store {s} Gbit/s per executor; shuffle network {w} Gbit/s per executor; {t:.1f} ms "
          "of scheduler time per task ({h} scheduler thread(s)); {l:.0f} ms stage launch "
          "latency; {o:.0f} ms coordinator time per query (+{f:.2f} ms per fact file)."
          .format(c=a.cores, b=a.task_bytes / 2**20, s=a.store_gbps, w=a.network_gbps, t=a.task_overhead_s * 1e3,
                  h=a.scheduler_threads, l=a.stage_latency_s * 1e3, o=a.coordinator_s * 1e3,
                  f=a.coordinator_per_file_s * 1e3))
    print()
    check = [project(q, sf0, sf0, 1, argparse.Namespace(**{**vars(a), "cores": cluster["slots"]}))
             for q in queries.values()]
    measured = [q["measured"] for q in queries.values()]
    print(f"Model at the measured point (SF {sf0:g}, 1 executor x {cluster['slots']} slots): "
          f"geomean {geomean(check):.3f} s, measured {geomean(measured):.3f} s.")
    print()
    header = "| SF | executors | cores | geomean s | max s | speed-up vs 4 | efficiency |"
    print(header)
    print("|---|---|---|---|---|---|---|")
    for sf in args.sf:
        base = None
        for n in args.executors:
            times = [project(q, sf0, sf, n, a) for q in queries.values()]
            g = geomean(times)
            base = base or (g, n)
            speedup = base[0] / g
            efficiency = speedup / (n / base[1])
            print(f"| {sf:g} | {n} | {n * a.cores} | {g:.2f} | {max(times):.2f} | "
                  f"{speedup:.2f}x | {efficiency:.0%} |")
    if args.per_query:
        print()
        print("| query | " + " | ".join(f"SF {sf:g} x{n}" for sf in args.sf
                                        for n in args.executors) + " |")
        print("|---|" + "---|" * (len(args.sf) * len(args.executors)))
        for name, q in queries.items():
            cells = [f"{project(q, sf0, sf, n, a):.2f}" for sf in args.sf
                     for n in args.executors]
            print(f"| {name} | " + " | ".join(cells) + " |")


def geomean(values):
    values = [max(v, 1e-6) for v in values]
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="measure SSB on clusters of 1 and 2 executors")
    m.add_argument("--sf", type=float, default=10)
    m.add_argument("--strata", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "..", "target")),
        "release", "strata"))
    m.add_argument("--warehouse")
    m.add_argument("--runs", type=int, default=3, help="runs per query (the first is cold)")
    m.add_argument("--out", default=os.path.join(HERE, "results", "scaling.json"))
    t = sub.add_parser("table", help="the measurements as SCALING.md's table")
    t.add_argument("measurements")
    p = sub.add_parser("model", help="project measurements to larger clusters")
    p.add_argument("measurements")
    p.add_argument("--sf", type=float, nargs="+", default=[100, 1000])
    p.add_argument("--executors", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    p.add_argument("--cores", type=int, default=8, help="task slots per executor")
    p.add_argument("--core-ratio", type=float, default=1.0,
                   help="an executor core's time for this machine's core-second")
    p.add_argument("--store-gbps", type=float, default=10.0,
                   help="object-store bandwidth per executor, Gbit/s")
    p.add_argument("--network-gbps", type=float, default=10.0,
                   help="shuffle bandwidth per executor, Gbit/s")
    p.add_argument("--shuffle-scales", action="store_true",
                   help="shuffle bytes grow with SF (repartitioned joins); SSB's partial "
                        "aggregates do not")
    p.add_argument("--task-bytes", type=float, default=128 * 2**20,
                   help="strata.cluster_task_bytes: fact-table bytes per scan task")
    p.add_argument("--task-overhead-s", type=float, default=None,
                   help="scheduler time per task [default: measured]")
    p.add_argument("--scheduler-threads", type=int, default=1)
    p.add_argument("--stage-latency-s", type=float, default=None,
                   help="latency to launch a stage after the one before ends [default: "
                        "measured]")
    p.add_argument("--coordinator-s", type=float, default=None,
                   help="planning, submission and result fetch per query [default: measured]")
    p.add_argument("--coordinator-per-file-s", type=float, default=0.0001,
                   help="planning time per fact-table file (pruning, plan size)")
    p.add_argument("--per-query", action="store_true")
    args = parser.parse_args()
    if args.command == "measure":
        measure(args)
    elif args.command == "table":
        table(args)
    else:
        model(args)


if __name__ == "__main__":
    sys.exit(main())
