"""The readable table, and issue 8's goals checked against the figures of this run."""

from __future__ import annotations

from typing import Any

from bench.profile import format_summary

Result = dict[str, Any]


def _runs(result: Result, backend: str, connections: int | None = None) -> list[Result]:
    return [
        run for run in result.get("runs", [])
        if run["backend"] == backend and (connections is None or run["connections"] == connections)
    ]


def _run(result: Result, backend: str, connections: int) -> Result | None:
    runs = _runs(result, backend, connections)
    return runs[0] if runs else None


def load_table(runs: list[Result]) -> list[str]:
    header = (
        f"{'backend':<10} {'store':>9} {'conns':>5} {'accept/s':>9} {'dot->250 p50/p95/p99 ms':>25} "
        f"{'e2e/s':>7} {'e2e s':>7} {'acks sent s':>11} {'CPU s':>6} {'CPU ms/msg':>10} {'cores':>5} "
        f"{'RSS peak MB':>11} {'RSS steady':>10} {'tickets':>9} {'no ack':>6}"
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        latency = run["latency_ms"]["dot_to_250"]
        e2e = run["end_to_end"]
        rss = run["rss_mb"]
        lines.append(
            f"{run['backend']:<10} {run.get('store_size', 0):>9,} {run['connections']:>5} "
            f"{run['acceptance']['per_second']:>9.1f} "
            f"{latency['p50']:>8.1f}/{latency['p95']:>7.1f}/{latency['p99']:>7.1f} "
            f"{e2e['per_second']:>7.1f} {e2e['seconds'] or float('nan'):>7.2f} "
            f"{e2e['outbox_drained_seconds'] or float('nan'):>11.2f} {run['cpu']['seconds']:>6.1f} "
            f"{run['cpu']['ms_per_message']:>10.2f} {run['cpu']['cores_busy']:>5.2f} "
            f"{rss['largest_process_peak_mb']:>11.1f} {rss['steady_after_total']:>10.1f} "
            f"{e2e['tickets_created']:>4}/{e2e['tickets_expected']:<4} {e2e['tickets_without_acknowledgement']:>6}"
        )
    return lines


def idle_lines(result: Result) -> list[str]:
    lines = []
    for backend, idle in result.get("idle", {}).items():
        ticket = idle["ticket"]["dot_to_ticket_ms"]
        deliver = idle["deliver"]["wall_ms"]
        lines.append(
            f"{backend:<10} idle mail -> ticket p50 {ticket['p50']:.1f} ms (p95 {ticket['p95']:.1f}, n={ticket['n']}); "
            f"`mailgate deliver` wall p50 {deliver['p50']:.1f} ms (p95 {deliver['p95']:.1f}, n={deliver['n']})"
        )
    return lines


def soak_lines(soak: Result | None) -> list[str]:
    if not soak:
        return []
    rss = soak["rss_mb"]
    return [
        f"soak {soak['backend']}: {soak['minutes']} min at {soak['rate_target']}/s -> {soak['accepted']} accepted "
        f"({soak['rate_achieved']}/s), all filed: {soak['all_filed']}, backlog max {soak['backlog_max']}, "
        f"dot->250 p99 {soak['latency_ms']['dot_to_250']['p99']:.1f} ms",
        f"  RSS total: first window {rss['first_window_median']} MB, last window {rss['last_window_median']} MB, "
        f"peak {rss['total_peak_mb']} MB, largest process peak {rss['largest_process_peak_mb']} MB, "
        f"slope {rss['slope_mb_per_10min']} MB/10 min",
    ]


def peer_lines(result: Result) -> list[str]:
    peer = result.get("peer")
    if not peer:
        return []
    if "error" in peer:
        return [f"roundup: not measured: {peer['error']}"]
    pipe, whole = peer["pipe"], peer["mailbox"]
    lines = [
        f"roundup {peer['version']} (classic, sqlite): MTA pipe {pipe['per_second']} msg/s "
        f"(p50 {pipe['per_message_ms']['p50']:.0f} ms/message, {pipe['messages']} msgs, {pipe['issues']} issues); "
        f"whole mailbox {whole['per_second']} msg/s ({whole['messages']} msgs, {whole['issues']} issues)",
    ]
    for name, ratio in peer.get("ratios", {}).items():
        lines.append(f"  mailgate/roundup {name}: {ratio}")
    return lines


def format_report(result: Result) -> str:
    corpus = result["corpus"]
    lines = [f"mailgate benchmark - corpus {corpus['mails']} mails ({corpus['requests']} requests, "
             f"{corpus['replies']} replies, median {corpus['size_median'] / 1000:.1f} KB, "
             f"max {corpus['size_max'] / 1000:.0f} KB, sha256 {corpus['sha256'][:12]})",
             f"SMTP: {result['meta']['session_mode']}", ""]
    lines += load_table(result.get("runs", []) + result.get("store_scale", {}).get("runs", []))
    lines += ["", *idle_lines(result)]
    scale = result.get("store_scale", {})
    if scale.get("comparison"):
        lines.append(f"store size: {scale['comparison']}")
    lines += soak_lines(result.get("soak"))
    lines += peer_lines(result)
    lines += [f"skipped: {reason}" for reason in result.get("skipped", [])]
    for run in result.get("runs", []):
        if run.get("profile"):
            lines += ["", f"profile of the daemon, {run['backend']} at {run['connections']} connections:",
                      format_summary(run["profile"])]
    lines += ["", "issue 8 goals:"]
    for goal in result.get("goals", []):
        verdict = {True: "MET", False: "NOT MET", None: "not measured"}[goal["met"]]
        lines.append(f"  {goal['goal']:<3} {verdict:<12} {goal['target']}: {goal['measured']}")
    return "\n".join(lines)


def _goal(goal: str, target: str, measured: str, met: bool | None) -> Result:
    return {"goal": goal, "target": target, "measured": measured, "met": met}


def _goal_1_2(result: Result) -> list[Result]:
    goals = []
    run16, run4 = _run(result, "sqlite", 16), _run(result, "sqlite", 4)
    if run16:
        e2e = run16["end_to_end"]["per_second"]
        goals.append(_goal("1", ">= 200 msg/s end to end, SQLite, 16 connections", f"{e2e} msg/s", e2e >= 200))
        accept = run16["acceptance"]["per_second"]
        goals.append(_goal("2a", ">= 500 msg/s durable acceptance, 16 connections", f"{accept} msg/s", accept >= 500))
    else:
        goals += [_goal("1", ">= 200 msg/s end to end at 16 connections", "no SQLite run at 16", None),
                  _goal("2a", ">= 500 msg/s acceptance at 16 connections", "no SQLite run at 16", None)]
    if run4:
        p99 = run4["latency_ms"]["dot_to_250"]["p99"]
        goals.append(_goal("2b", "p99 end of DATA -> 250 <= 50 ms at 4 connections", f"{p99} ms", p99 <= 50))
    else:
        goals.append(_goal("2b", "p99 end of DATA -> 250 <= 50 ms at 4 connections", "no SQLite run at 4", None))
    return goals


def _goal_3(result: Result) -> list[Result]:
    idle = result.get("idle", {}).get("sqlite")
    if not idle:
        return [_goal("3", "idle mail -> ticket p50 <= 10 ms; deliver p50 <= 50 ms", "no SQLite idle run", None)]
    ticket, deliver = idle["ticket"]["dot_to_ticket_ms"], idle["deliver"]["wall_ms"]
    return [_goal("3a", "idle mail -> ticket p50 <= 10 ms", f"{ticket['p50']} ms (n={ticket['n']})",
                  ticket["p50"] <= 10 if ticket["n"] else None),
            _goal("3b", "`mailgate deliver` p50 <= 50 ms", f"{deliver['p50']} ms (n={deliver['n']})",
                  deliver["p50"] <= 50 if deliver["n"] else None)]


def _goal_4(result: Result) -> Result:
    target = "cost per message within 20 % between 10k and 1M tickets"
    scale = result.get("store_scale", {})
    sizes = scale.get("sizes", [])
    comparison = scale.get("ratios")
    if not comparison:
        return _goal("4", target, "not run (use --store-size 10000 --store-size 1000000)", None)
    measured = "; ".join(f"{backend}: {values}" for backend, values in comparison.items())
    if not sizes or min(sizes) > 10_000 or max(sizes) < 1_000_000:
        return _goal("4", target, f"sizes {sizes} only: {measured}", None)
    met = all(values["cpu_ms_per_message"] <= 1.2 and values["e2e_seconds_per_message"] <= 1.2
              for values in comparison.values())
    return _goal("4", target, measured, met)


def _goal_5(result: Result) -> Result:
    target = "RSS <= 150 MB per process, flat over 30 min at 50 msg/s"
    soak = result.get("soak")
    if not soak:
        return _goal("5", target, "not run (use --soak 30 --rate 50)", None)
    rss = soak["rss_mb"]
    peak = max(rss["largest_process_peak_mb"], rss["kernel_peak_process_mb"])
    first, last = rss["first_window_median"], rss["last_window_median"]
    flat = first > 0 and (last - first) / first <= 0.10
    measured = f"largest process peak {peak} MB, total {first} -> {last} MB over {soak['minutes']} min"
    full = soak["minutes"] >= 30 and soak["rate_target"] >= 50
    return _goal("5", target, measured + ("" if full else " (shorter or slower than the goal)"),
                 (peak <= 150 and flat) if full else None)


def evaluate_goals(result: Result) -> list[Result]:
    return [
        *_goal_1_2(result),
        *_goal_3(result),
        _goal_4(result),
        _goal_5(result),
        _goal("6", "2 instances on one PostgreSQL, 10,000 messages, exactly once", "not measured by this harness",
              None),
    ]
