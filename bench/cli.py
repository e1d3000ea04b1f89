"""`python -m bench`: mailgate's end-to-end benchmark, one command, a table and JSON.

    python -m bench                       # 300 mails; SQLite and PostgreSQL; 1, 4, 16 connections
    python -m bench --peer roundup        # ... and Roundup's mail gateway on the same corpus
    python -m bench --store-size 10000 --store-size 1000000    # cost per message vs store size
    python -m bench --soak 30 --rate 50 --backends sqlite      # memory over 30 minutes
    python -m bench --smoke --json out.json                    # seconds: every code path, small
    python -m bench --instances 1,2 --mails 10000 --backends postgresql   # daemons sharing one database

Every daemon is a real `python -m mailgate run` process on 127.0.0.1 with a fresh database,
driven over SMTP by client threads; acknowledgements go to a loopback aiosmtpd sink. Run it
from the repository root with the project's venv (it imports tests/support/smtp_sink.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.corpus import Mail, build_corpus, describe
from bench.driver import SESSION_MODE
from bench.instance import postgres_unavailable_reason, use_bytecode_cache
from bench.multi import measure_cluster, running_cluster, scaling
from bench.procstat import load_average
from bench.report import evaluate_goals, format_report
from bench.scenarios import (
    DaemonDied,
    Options,
    Running,
    fresh_requests,
    measure_deliver,
    measure_idle,
    measure_load,
    run_soak,
    running_instance,
)
from bench.sink import Sink

BACKENDS = ("sqlite", "postgresql")
SMOKE_INSTANCE_MAILS = 40
SMOKE_INSTANCE_CONNECTIONS = 4


def _csv_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=300, help="corpus size (default 300)")
    parser.add_argument("--seed", type=int, default=2026, help="corpus seed (default 2026)")
    parser.add_argument("--connections", type=_csv_ints, default=[1, 4, 16], help="e.g. 1,4,16 (default)")
    parser.add_argument("--backends", help="sqlite,postgresql (default: both; postgresql with --instances)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results as JSON")
    parser.add_argument("--store-size", metavar="N", type=int, action="append", default=[],
                        help="pre-fill N tickets and run the highest concurrency again (repeatable)")
    parser.add_argument("--soak", metavar="MINUTES", type=float, default=0.0, help="constant-rate run (default off)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages/s during --soak (default 50)")
    parser.add_argument("--soak-connections", type=int, default=8, help="paced connections during --soak (default 8)")
    parser.add_argument("--peer", choices=["roundup"], help="also run Roundup's mail gateway on the corpus")
    parser.add_argument("--processes", type=int, help="[worker] processes of each daemon (default: its default)")
    parser.add_argument("--idle-trials", type=int, default=20)
    parser.add_argument("--deliver-runs", type=int, default=20)
    parser.add_argument("--load-timeout", type=float, default=600.0, help="seconds one load may take at most")
    parser.add_argument("--py-spy", metavar="PATH", help="py-spy binary: profile the daemon at the top concurrency")
    parser.add_argument("--profile-dir", type=Path, help="where py-spy profiles go (default: a temporary dir)")
    parser.add_argument("--instances", metavar="N,M", type=_csv_ints, default=[],
                        help="instead of the per-connection runs: N daemons on one PostgreSQL database, then M, "
                             "the highest --connections dealt across them, each run checked for exactly-once")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds: 20 mails, 1 connection, SQLite, small store-size and soak, no peer; "
                             f"then {SMOKE_INSTANCE_MAILS} mails to 2 daemons on PostgreSQL when it answers")
    return parser


@dataclass
class Plan:
    backends: list[str]
    connections: list[int]
    store_sizes: list[int]
    soak_minutes: float
    soak_rate: float
    peer: str | None
    # Daemon counts on one PostgreSQL database; empty: no multi-instance runs.
    instances: list[int] = field(default_factory=list)
    # Whether the 1/4/16-connection runs happen (not in the multi-instance mode).
    per_connection: bool = True
    # Total client connections of a multi-instance run, dealt across its daemons.
    instance_connections: int = 0
    # The multi-instance runs' own corpus size (the smoke's), or None: the main corpus.
    instance_mails: int | None = None


def _instance_counts(values: list[int]) -> list[int]:
    if any(value < 1 for value in values):
        raise SystemExit("python -m bench: --instances takes positive daemon counts, e.g. 1,2")
    return sorted(set(values))


def _plan(args: argparse.Namespace) -> Plan:
    instances = _instance_counts(args.instances)
    if args.smoke:
        args.mails, args.idle_trials, args.deliver_runs, args.soak_connections = min(args.mails, 20), 3, 3, 2
        counts = instances or [2]
        return Plan(["sqlite"], [1], args.store_size or [200], args.soak or 0.05, min(args.rate, 10.0), None,
                    instances=counts, instance_connections=max(SMOKE_INSTANCE_CONNECTIONS, *counts),
                    instance_mails=SMOKE_INSTANCE_MAILS)
    default = "postgresql" if instances else ",".join(BACKENDS)
    backends = [name.strip() for name in (args.backends or default).split(",") if name.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise SystemExit(f"python -m bench: unknown backend(s) {', '.join(unknown)}; use {', '.join(BACKENDS)}")
    if instances and backends != ["postgresql"]:
        raise SystemExit("python -m bench: --instances runs daemons that share one PostgreSQL database "
                         "(SQLite allows one process per data directory); use --backends postgresql")
    connections = sorted(set(args.connections))
    return Plan(backends, connections, sorted(set(args.store_size)), args.soak, args.rate, args.peer,
                instances=instances, per_connection=not instances,
                instance_connections=max(connections[-1], *instances) if instances else 0)


def _git_state() -> str | None:
    """The commit, and whether the work tree differs from it (each daemon runs the tree as it is)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                            check=False)
    if not commit.stdout.strip():
        return None
    return commit.stdout.strip() + (" (modified)" if status.stdout.strip() else "")


def _meta(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": _git_state(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "seed": args.seed,
        "smoke": bool(args.smoke),
        "backends": plan.backends,
        "connections": plan.connections,
        "instances": plan.instances,
        "session_mode": SESSION_MODE,
        "load_average_at_start": load_average(),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_backend(root: Path, sink: Sink, backend: str, corpus: list[Mail], plan: Plan, options: Options,
                 result: dict[str, Any]) -> None:
    """One fresh daemon per concurrency; the first one, idle again after its load, also gives the
    idle single-mail latency and hosts the `mailgate deliver` runs."""
    top = max(plan.connections)
    for connections in plan.connections:
        log(f"{backend}: {len(corpus)} mails over {connections} connection(s)")
        with running_instance(root, sink, backend, options) as running:
            profile = f"{backend}-c{connections}" if connections == top else None
            result["runs"].append(measure_load(running, corpus, connections, sink, options, profile))
            if backend not in result["idle"] and (options.idle_trials or options.deliver_runs):
                log(f"{backend}: idle latency ({options.idle_trials} mails), "
                    f"`mailgate deliver` ({options.deliver_runs} runs)")
                result["idle"][backend] = _idle_and_deliver(running, corpus, options)


def _idle_and_deliver(running: Running, corpus: list[Mail], options: Options) -> dict[str, Any]:
    idle = measure_idle(running, fresh_requests(corpus, options.seed, options.idle_trials, 900), options)
    deliver = measure_deliver(running, fresh_requests(corpus, options.seed, options.deliver_runs, 950))
    return {"ticket": idle, "deliver": deliver}


def _run_store_scale(root: Path, sink: Sink, backend: str, corpus: list[Mail], plan: Plan, options: Options,
                     scale: dict[str, Any]) -> None:
    top = max(plan.connections)
    for size in plan.store_sizes:
        log(f"{backend}: store of {size:,} tickets, {top} connection(s)")
        with running_instance(root, sink, backend, options, store_size=size) as running:
            run = measure_load(running, corpus, top, sink, options)
            run["store_size"], run["prefill_seconds"] = size, running.prefill_seconds
            scale["runs"].append(run)


def _store_ratios(scale: dict[str, Any]) -> None:
    """Largest store against smallest: cost per message as a ratio (1.0 = the same)."""
    ratios: dict[str, Any] = {}
    for backend in BACKENDS:
        runs = sorted((run for run in scale["runs"] if run["backend"] == backend), key=lambda r: r["store_size"])
        if len(runs) < 2:
            continue
        small, large = runs[0], runs[-1]

        def per_message(run: dict[str, Any]) -> float:
            return float(run["end_to_end"]["seconds"] or 0.0) / max(1, int(run["acceptance"]["accepted"]))

        ratios[backend] = {
            "sizes": [small["store_size"], large["store_size"]],
            "cpu_ms_per_message": round(large["cpu"]["ms_per_message"] / max(small["cpu"]["ms_per_message"], 1e-9), 3),
            "e2e_seconds_per_message": round(per_message(large) / max(per_message(small), 1e-9), 3),
        }
    scale["ratios"] = ratios
    scale["comparison"] = "; ".join(
        f"{backend} {v['sizes'][0]:,} -> {v['sizes'][1]:,} tickets: CPU/msg x{v['cpu_ms_per_message']}, "
        f"e2e time/msg x{v['e2e_seconds_per_message']}" for backend, v in ratios.items()
    )


def _run_peer(root: Path, sink: Sink, corpus: list[Mail], result: dict[str, Any]) -> None:
    from bench.peer_roundup import PeerUnavailable, run_roundup

    workdir = Path(tempfile.mkdtemp(prefix="roundup-", dir=root))
    try:
        peer = run_roundup(corpus, workdir, sink.port, log)
    except (PeerUnavailable, subprocess.TimeoutExpired, OSError) as error:
        log(f"roundup: not measured: {error}")
        result["peer"] = {"error": str(error)}
        return
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratios = {}
    for backend in BACKENDS:
        runs = [run for run in result["runs"] if run["backend"] == backend]
        if runs:
            best = max(run["end_to_end"]["per_second"] for run in runs)
            ratios[f"{backend} best e2e vs pipe"] = round(best / max(peer["pipe"]["per_second"], 1e-9), 1)
            ratios[f"{backend} best e2e vs mailbox"] = round(best / max(peer["mailbox"]["per_second"], 1e-9), 1)
    peer["ratios"] = ratios
    result["peer"] = peer


def _run_instances(root: Path, sink: Sink, corpus: list[Mail], plan: Plan, options: Options,
                   result: dict[str, Any]) -> None:
    """1, 2, ... daemons on one fresh PostgreSQL schema each time, the same corpus over SMTP to all."""
    section: dict[str, Any] = {"backend": "postgresql", "counts": plan.instances,
                               "connections": plan.instance_connections, "runs": [], "errors": [], "scaling": {},
                               "skipped": None}
    result["multi_instance"] = section
    reason = postgres_unavailable_reason()
    if reason:
        log(f"skipping the multi-instance runs: {reason}")
        section["skipped"] = reason
        return
    mails = corpus if plan.instance_mails is None else build_corpus(options.seed, plan.instance_mails)
    section["corpus"] = describe(mails)
    for count in plan.instances:
        log(f"postgresql: {len(mails)} mails to {count} daemon(s) sharing one database, "
            f"{plan.instance_connections} connection(s) in all")
        try:
            with running_cluster(root, sink, count, log, options.processes) as cluster:
                run = measure_cluster(cluster, mails, plan.instance_connections, sink, options.load_timeout)
        except (DaemonDied, RuntimeError, TimeoutError, OSError, psycopg.Error) as error:
            log(f"  {count} daemon(s): the run failed: {error}")
            section["errors"].append({"instances": count, "error": f"{type(error).__name__}: {error}"[:3000]})
            continue
        section["runs"].append(run)
        checks = run["exactly_once"]
        log(f"  e2e {run['end_to_end']['per_second']} msg/s, exactly once: {checks['exactly_once']}, "
            f"duplicates {checks['duplicates']}, processed by instance {checks['inbound_processed_by']}")
        if checks.get("kept_logs"):
            log(f"  not exactly once: the daemons' logs are kept in {', '.join(checks['kept_logs'])}")
    section["scaling"] = scaling(section["runs"])


def _execute(args: argparse.Namespace, plan: Plan, corpus: list[Mail], options: Options, root: Path,
             result: dict[str, Any]) -> None:
    with Sink() as sink:
        for backend in plan.backends:
            reason = postgres_unavailable_reason() if backend == "postgresql" else None
            if reason:
                log(f"skipping PostgreSQL: {reason}")
                result["skipped"].append(reason)
                continue
            if plan.per_connection:
                _run_backend(root, sink, backend, corpus, plan, options, result)
            if plan.store_sizes:
                _run_store_scale(root, sink, backend, corpus, plan, options, result["store_scale"])
        _store_ratios(result["store_scale"])
        if plan.instances:
            _run_instances(root, sink, corpus, plan, options, result)
        if plan.soak_minutes > 0:
            backend = plan.backends[0]
            log(f"{backend}: soak {plan.soak_minutes} min at {plan.soak_rate} msg/s")
            with running_instance(root, sink, backend, options, sample_interval=1.0) as running:
                result["soak"] = run_soak(running, corpus, options, sink, minutes=plan.soak_minutes,
                                          rate=plan.soak_rate, connections=args.soak_connections)
        if plan.peer == "roundup":
            _run_peer(root, sink, corpus, result)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plan = _plan(args)
    log(f"generating the corpus: {args.mails} mails, seed {args.seed}")
    corpus = build_corpus(args.seed, args.mails)
    result: dict[str, Any] = {"meta": _meta(args, plan), "corpus": describe(corpus), "runs": [], "idle": {},
                              "store_scale": {"sizes": plan.store_sizes, "runs": []}, "soak": None, "peer": None,
                              "multi_instance": None,
                              "skipped": [], "interrupted": False}
    root = Path(tempfile.mkdtemp(prefix="mailgate-bench-"))
    use_bytecode_cache(root / "pycache")
    result["meta"]["bytecode"] = "cached in a temporary PYTHONPYCACHEPREFIX (as installed packages have .pyc files)"
    profile_dir = args.profile_dir or root / "profiles"
    if args.py_spy:
        profile_dir = args.profile_dir or Path(tempfile.mkdtemp(prefix="mailgate-bench-profiles-"))
    profile_dir.mkdir(parents=True, exist_ok=True)
    options = Options(
        args.seed, args.load_timeout, args.idle_trials, args.deliver_runs, args.py_spy, profile_dir, log, args.processes
    )
    code = 0
    try:
        _execute(args, plan, corpus, options, root, result)
    except KeyboardInterrupt:
        result["interrupted"], code = True, 130
        log("interrupted: daemons stopped, temporary files removed; partial results follow")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["meta"]["load_average_at_end"] = load_average()
    result["meta"]["git_commit_at_end"] = _git_state()
    result["goals"] = evaluate_goals(result)
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
        log(f"JSON written to {args.json}")
    return code
