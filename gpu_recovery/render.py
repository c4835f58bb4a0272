"""Terminal rendering for people: rich tables of the projected items."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from events_schema.arn import short_arn

ID_WIDTH = 12  # enough to tell nodes and tasks apart in a terminal table


def demo_tables(result: Any, console: Console | None = None) -> None:
    console = console or Console()
    tables = result.tables
    nodes = Table(title=f"ecs_node ({len(tables['ecs_node'])})")
    for column in ("node", "instance", "status", "agent", "GPUs", "repair state", "last health report"):
        nodes.add_column(column)
    for node in tables["ecs_node"]:
        report = node.get("last_health_report") or {}
        nodes.add_row(
            short_arn(node["container_instance_arn"], width=ID_WIDTH), str(node.get("ec2_instance_id")),
            str(node.get("status")),
            "connected" if node.get("agent_connected") else "disconnected", str(node.get("gpu_count")),
            str(node.get("repair_state")), str(report.get("verdict", "-")),
        )
    jobs = Table(title=f"ecs_job ({len(tables['ecs_job'])})")
    for column in ("job", "state", "tasks", "running", "restarts", "reason"):
        jobs.add_column(column)
    for job in tables["ecs_job"]:
        jobs.add_row(str(job["job_id"]), str(job.get("state")), str(job.get("task_count")),
                     str(job.get("running_count")), str(job.get("restart_count")), str(job.get("state_reason") or ""))
    tasks = Table(title=f"ecs_task ({len(tables['ecs_task'])})")
    for column in ("task", "job", "node", "status", "version", "GPUs", "exit", "stop code"):
        tasks.add_column(column)
    for task in sorted(tables["ecs_task"], key=lambda t: (str(t.get("created_at")), str(t["task_arn"]))):
        tasks.add_row(short_arn(task["task_arn"], width=ID_WIDTH), str(task.get("job_id")),
                      short_arn(task.get("container_instance_arn"), width=ID_WIDTH),
                      str(task.get("last_status")), str(task.get("version")), str(len(task.get("gpu_ids") or [])),
                      str(task.get("exit_code") if task.get("exit_code") is not None else "-"),
                      str(task.get("stop_code") or "-"))
    for table in (nodes, jobs, tasks):
        console.print(table)
    actions = Table(title="AWS calls that changed something")
    for column in ("type", "count"):
        actions.add_column(column)
    for kind, count in sorted(result.action_counts().items()):
        actions.add_row(kind, str(count))
    console.print(actions)
    for note in result.notifications:
        console.print(f"[yellow]notification[/] {note.get('subject')}: {note.get('summary')}")
    for check in result.expectations:
        mark = "[green]ok[/]" if check["ok"] else "[red]FAILED[/]"
        console.print(f"  {mark} {check['check']}: expected {check['expected']}, got {check['actual']}")
    verdict = "[bold green]done[/]" if result.ok else "[bold red]expectations not met[/]"
    console.print(
        f"{verdict} in {result.seconds:.1f}s ({result.virtual_seconds / 60:.0f} simulated minutes): "
        f"{result.events} ECS events, {len(result.incidents)} incident(s), {len(result.actions)} AWS calls, "
        f"{len(result.notifications)} notification(s), {len(result.parked)} parked records."
    )
