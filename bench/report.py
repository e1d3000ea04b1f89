"""The readable table, and the performance goals checked against the figures of this run."""

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


def multi_instance_lines(section: Result | None) -> list[str]:
    """The multi-instance runs: rates per daemon count, each daemon's share, the exactly-once checks."""
    if not section:
        return []
    if section.get("skipped"):
        return [f"multi-instance (PostgreSQL): skipped: {section['skipped']}"]
    corpus = section.get("corpus", {})
    lines = [f"multi-instance: daemons sharing one PostgreSQL database, {corpus.get('mails', 0)} mails "
             f"({corpus.get('requests', 0)} requests), {section['connections']} SMTP connections dealt across them"]
    header = (f"{'instances':>9} {'accept/s':>9} {'dot->250 p50/p99 ms':>20} {'e2e/s':>7} {'e2e s':>7} "
              f"{'acks sent s':>11} {'CPU s':>6} {'CPU ms/msg':>10} {'cores':>5} {'PG cores':>8} {'others':>6} "
              f"{'tickets':>11} {'dupes':>5} {'exactly once':>12}")
    lines += [header, "-" * len(header)]
    for run in section.get("runs", []):
        latency, e2e, cpu, checks = run["latency_ms"]["dot_to_250"], run["end_to_end"], run["cpu"], run["exactly_once"]
        pg = cpu.get("postgresql_cores_busy")
        lines.append(
            f"{run['instances']:>9} {run['acceptance']['per_second']:>9.1f} "
            f"{latency['p50']:>9.1f}/{latency['p99']:>10.1f} {e2e['per_second']:>7.1f} "
            f"{e2e['seconds'] or float('nan'):>7.2f} {e2e['outbox_drained_seconds'] or float('nan'):>11.2f} "
            f"{cpu['seconds']:>6.1f} {cpu['ms_per_message']:>10.2f} {cpu['cores_busy']:>5.2f} "
            f"{pg if pg is not None else float('nan'):>8.2f} {cpu['other_processes_cores_busy']:>6.2f} "
            f"{checks['tickets_created']:>5}/{checks['tickets_expected']:<5} {checks['duplicates']:>5} "
            f"{'yes' if checks['exactly_once'] else 'NO':>12}"
        )
    for run in section.get("runs", []):
        checks = run["exactly_once"]
        lines.append(f"  {run['instances']} instance(s): " + "; ".join(
            f"#{row['instance']} accepted {row['accepted']} over {row['smtp_connections']} conn, processed "
            f"{row['inbound_processed']}, sent {row['outbox_sent']}, CPU {row['cpu_seconds']} s, "
            f"RSS peak {row['rss_peak_mb']} MB" for row in run["per_instance"]))
        lines.append(
            f"    inbound {checks['inbound_processed']}/{checks['inbound_rows']} processed "
            f"(accepted {checks['accepted']}), attempts != 1: {checks['inbound_attempts_not_1']}; messages "
            f"stored {checks['messages_stored']}, missing {checks['messages_missing']}, duplicated "
            f"{checks['messages_duplicated']}; outbox {checks['outbox_states'].get('sent', 0)}/{checks['outbox_rows']} "
            f"sent, attempts != 1: {checks['outbox_attempts_not_1']}; sink duplicates {checks['sink_duplicates']}, "
            f"missing {checks['sink_missing']}; follow-ups in another ticket than their request: "
            f"{checks['replies_apart_from_request']}"
        )
    for error in section.get("errors", []):
        lines.append(f"  {error['instances']} instance(s): the run failed: {error['error'][:300]}")
    for count, ratio in section.get("scaling", {}).items():
        lines.append(f"  {count} instances vs 1: e2e x{ratio['end_to_end']}, acceptance x{ratio['acceptance']}")
    return lines


def format_report(result: Result) -> str:
    corpus = result["corpus"]
    lines = [f"mailgate benchmark - corpus {corpus['mails']} mails ({corpus['requests']} requests, "
             f"{corpus['replies']} replies, median {corpus['size_median'] / 1000:.1f} KB, "
             f"max {corpus['size_max'] / 1000:.0f} KB, sha256 {corpus['sha256'][:12]})",
             f"SMTP: {result['meta']['session_mode']}", ""]
    load_runs = result.get("runs", []) + result.get("store_scale", {}).get("runs", [])
    if load_runs or not result.get("multi_instance"):
        lines += load_table(load_runs)
    lines += ["", *idle_lines(result)]
    scale = result.get("store_scale", {})
    if scale.get("comparison"):
        lines.append(f"store size: {scale['comparison']}")
    multi = multi_instance_lines(result.get("multi_instance"))
    lines += ["", *multi] if multi else []
    lines += soak_lines(result.get("soak"))
    lines += peer_lines(result)
    lines += [f"skipped: {reason}" for reason in result.get("skipped", [])]
    for run in result.get("runs", []):
        if run.get("profile"):
            lines += ["", f"profile of the daemon, {run['backend']} at {run['connections']} connections:",
                      format_summary(run["profile"])]
    lines += ["", "performance goals:"]
    for goal in result.get("goals", []):
        verdict = {True: "MET", False: "NOT MET", None: "not measured"}[goal["met"]]
        lines.append(f"  {goal['goal']:<3} {verdict:<12} {goal['target']}: {goal['measured']}")
    return "\n".join(line for index, line in enumerate(lines) if line or index == 0 or lines[index - 1])


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


GOAL_6_MAILS = 10_000


def _goal_6(result: Result) -> Result:
    """Met when, with 2 daemons, nothing was duplicated, every message was processed (and every
    outbox row sent once), and both daemons processed mail; not measured below 10,000 mails."""
    target = "2 instances on one PostgreSQL, 10,000 messages, every message and outbox row exactly once"
    section = result.get("multi_instance")
    if not section:
        return _goal("6", target, "not run (use --instances 1,2 --mails 10000 --backends postgresql)", None)
    if section.get("skipped"):
        return _goal("6", target, f"skipped: {section['skipped']}", None)
    failed = [error for error in section.get("errors", []) if error["instances"] >= 2]
    runs = [run for run in section.get("runs", []) if run["instances"] >= 2]
    if not runs:
        if failed:
            return _goal("6", target, f"the {failed[0]['instances']}-instance run failed: {failed[0]['error'][:200]}",
                         False)
        return _goal("6", target, "no run with 2 or more instances", None)
    run = min(runs, key=lambda r: r["instances"])
    checks = run["exactly_once"]
    rates = {str(r["instances"]): r["end_to_end"]["per_second"] for r in section.get("runs", [])}
    measured = (
        f"{run['instances']} instances, {run['mails']} mails: duplicates {checks['duplicates']}, processed "
        f"{checks['inbound_processed']}/{run['mails']}, outbox {checks['outbox_states'].get('sent', 0)}/"
        f"{checks['outbox_rows']} sent (sink duplicates {checks['sink_duplicates']}), processed per instance "
        f"{checks['inbound_processed_by']}; e2e msg/s by instances {rates}"
    )
    met = (checks["duplicates"] == 0 and checks["every_message_processed"] and checks["every_outbox_row_sent_once"]
           and checks["instances_that_processed"] >= 2)
    if met and run["mails"] < GOAL_6_MAILS:
        return _goal("6", target, measured + f" (fewer than {GOAL_6_MAILS:,} mails)", None)
    return _goal("6", target, measured, met)


def evaluate_goals(result: Result) -> list[Result]:
    return [
        *_goal_1_2(result),
        *_goal_3(result),
        _goal_4(result),
        _goal_5(result),
        _goal_6(result),
    ]
