"""Fault traces for ``gpu-recovery simulate``: a mix of root causes scaled to a fleet and a duration.

A *fault mix* says how often each root cause interrupted a job on a fleet of ``nodes`` nodes over
``days`` days, and what each cause looks like on ECS (``looks_like``). The ``llama3`` preset is Meta's
table of the 419 unexpected interruptions of Llama 3 405B pre-training (and its 47 planned ones); a
fleet's own history comes from ``gpu-recovery report --json`` (``mix_from_report``). ``draw_trace``
scales a mix to another fleet and duration and draws the interruptions with a seed. Pure: no I/O but
``load_mix``, no clock, no global random state. The mapping and its sources: docs/simulate.md.
"""

from __future__ import annotations

import json
import math
import random
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from consumers.core.errors import ConfigError

DAY_S = 86_400.0
FIRST_FAULT_S = 600.0  # the jobs run for ten minutes before the first fault can hit them
Kind = Literal["fault", "instance", "maintenance", "planned"]
Category = Literal["gpu", "software", "network", "host", "maintenance", "planned", "unknown"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LooksLike(_Spec):
    """What one cause looks like on ECS (one of several, by weight).

    * ``fault``: the node's GPUs fail a rank (``xids`` in the rank's stop reason when ``evidence``) and
      DCGM on the node says ``dcgm``; after a reboot it says ``after_reboot``.
    * ``instance``: EC2 stops or terminates the instance (``ec2_state``): a host failure.
    * ``maintenance``: AWS Health announces ``code`` ``notice_s`` ahead; the host reboots at the window.
    * ``planned``: the job's owner stops the job and launches it again ``downtime_s`` later.
    """

    kind: Kind = "fault"
    weight: float = Field(1.0, gt=0)
    xids: tuple[int, ...] = ()
    dcgm: Literal["pass", "fail", "crash", "config"] = "pass"
    after_reboot: Literal["pass", "fail"] = "pass"
    evidence: bool = True
    ec2_state: Literal["stopped", "terminated"] = "terminated"
    code: str = "AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED"
    notice_s: float = Field(3600.0, ge=60)
    downtime_s: float = Field(600.0, ge=0)

    def describe(self) -> str:
        if self.kind == "instance":
            return f"EC2 instance {self.ec2_state}"
        if self.kind == "maintenance":
            return f"{self.code}, {self.notice_s / 3600:g} h notice"
        if self.kind == "planned":
            return f"owner stops and relaunches the job ({self.downtime_s / 60:g} min)"
        xids = f"XID {'/'.join(map(str, self.xids))}" if self.xids else "no XID"
        tail = f", {self.after_reboot} after reboot" if self.dcgm == "fail" else ""
        return f"{xids}{'' if self.evidence else ' (rank sees an NCCL timeout)'}, DCGM {self.dcgm}{tail}"


class Cause(_Spec):
    name: str = Field(min_length=1)
    count: float = Field(ge=0, description="interruptions in the mix's fleet over its days")
    category: Category
    hardware: bool = Field(description="taking the node out of service for this cause is right")
    looks_like: tuple[LooksLike, ...] = Field(min_length=1)


class FaultMix(_Spec):
    name: str
    source: str = ""
    nodes: int = Field(gt=0, description="nodes of the fleet the counts come from")
    days: float = Field(gt=0)
    causes: tuple[Cause, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique(self) -> FaultMix:
        names = [c.name for c in self.causes]
        if len(set(names)) != len(names):
            raise ValueError(f"cause names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
        return self

    @property
    def unexpected(self) -> float:
        return sum(c.count for c in self.causes if c.category != "planned")


class Interruption(_Spec):
    """One drawn interruption: when it hits (seconds after the jobs run), why, and how it looks.

    ``pick`` in [0, 1) chooses the victim among the nodes running a rank at that moment, so a trace
    names no node and replays the same on any fleet state."""

    index: int
    at: float
    cause: str
    category: Category
    hardware: bool
    looks: LooksLike
    pick: float = Field(ge=0, lt=1)


# --- the presets --------------------------------------------------------------------------------------

LLAMA3_SOURCE = ("Meta, The Llama 3 Herd of Models (2024), section 3.3.4 and Table 5: 466 job interruptions "
                 "in 54 days of Llama 3 405B pre-training on 16,384 H100 GPUs (2,048 nodes of 8), 47 planned "
                 "and 419 unexpected; https://arxiv.org/abs/2407.21783")


def _fault(xids: tuple[int, ...] = (), *, dcgm: str = "fail", after: str = "pass", evidence: bool = True,
           weight: float = 1.0) -> LooksLike:
    return LooksLike(kind="fault", xids=xids, dcgm=dcgm, after_reboot=after, evidence=evidence,
                     weight=weight)


HEALTHY_NCCL = _fault(dcgm="pass", evidence=False)  # a rank dies of the collective timeout; the GPUs are fine
HOST_DOWN = LooksLike(kind="instance", ec2_state="terminated")


def _cause(name: str, count: float, category: Category, hardware: bool, *looks: LooksLike) -> Cause:
    return Cause(name=name, count=count, category=category, hardware=hardware, looks_like=looks)


LLAMA3 = FaultMix(name="llama3", source=LLAMA3_SOURCE, nodes=2048, days=54, causes=(
    _cause("faulty GPU", 148, "gpu", True, _fault((79,), after="fail", weight=0.5),
           _fault((74,), after="fail", weight=0.25), _fault((62,), weight=0.25)),
    _cause("GPU HBM3 memory", 72, "gpu", True, _fault((48,), weight=0.5), _fault((63,), weight=0.25),
           _fault((64,), after="fail", weight=0.25)),
    _cause("software bug", 54, "software", False, _fault((13,), dcgm="pass", weight=0.3),
           _fault(dcgm="pass", evidence=False, weight=0.7)),
    _cause("network switch/cable", 35, "network", False, HEALTHY_NCCL),
    _cause("host maintenance", 32, "maintenance", False,
           LooksLike(kind="maintenance", code="AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED", notice_s=3600)),
    _cause("GPU SRAM memory", 19, "gpu", True, _fault((95,)), ),
    _cause("GPU system processor", 17, "gpu", True, _fault((119,), weight=0.7), _fault((120,), weight=0.3)),
    _cause("NIC", 7, "network", False, HEALTHY_NCCL),
    _cause("NCCL watchdog timeouts", 7, "network", False, HEALTHY_NCCL),
    _cause("silent data corruption", 6, "gpu", True, _fault(after="fail", evidence=False)),
    _cause("GPU thermal interface + sensor", 6, "gpu", True, _fault(after="fail", evidence=False)),
    _cause("SSD", 3, "host", True, HOST_DOWN),
    _cause("power supply", 3, "host", True, HOST_DOWN),
    _cause("server chassis", 2, "host", True, HOST_DOWN),
    _cause("IO expansion board", 2, "host", True, HOST_DOWN),
    _cause("dependency", 2, "software", False, HEALTHY_NCCL),
    _cause("CPU", 2, "host", True, HOST_DOWN),
    _cause("system memory", 2, "host", True, HOST_DOWN),
    _cause("planned", 47, "planned", False, LooksLike(kind="planned", downtime_s=600)),
))
PRESETS = {"llama3": LLAMA3}


# --- scaling and drawing --------------------------------------------------------------------------------


def scaled_counts(mix: FaultMix, nodes: int, days: float) -> dict[str, int]:
    """Each cause's count at another fleet size and duration, as whole interruptions.

    Largest remainders: the total is the scaled total rounded, each cause gets its floor plus one for the
    largest fractions, so the mix's own size and duration give back its own counts exactly."""
    factor = (nodes / mix.nodes) * (days / mix.days)
    exact = {c.name: c.count * factor for c in mix.causes}
    counts = {name: math.floor(value + 1e-9) for name, value in exact.items()}
    short = round(sum(exact.values())) - sum(counts.values())
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - counts[name]), name))
    for name in by_remainder[:max(0, short)]:
        counts[name] += 1
    return counts


def draw_trace(mix: FaultMix, *, nodes: int, days: float, seed: int,
               include_planned: bool = True) -> list[Interruption]:
    """The interruptions of ``days`` on ``nodes`` nodes: each cause's scaled count, at times drawn
    uniformly over the run (after the first ten minutes), in time order. Same inputs, same trace."""
    rng = random.Random(seed)
    counts = scaled_counts(mix, nodes, days)
    span = max(days * DAY_S - FIRST_FAULT_S, 1.0)
    drawn: list[tuple[float, str, LooksLike, float]] = []
    for cause in mix.causes:
        if cause.category == "planned" and not include_planned:
            continue
        weights = [look.weight for look in cause.looks_like]
        for _ in range(counts[cause.name]):
            at = FIRST_FAULT_S + rng.random() * span
            look = rng.choices(cause.looks_like, weights)[0]
            drawn.append((at, cause.name, look, rng.random()))
    drawn.sort(key=lambda d: (d[0], d[1]))
    by_name = {c.name: c for c in mix.causes}
    return [Interruption(index=n, at=round(at, 3), cause=name, category=by_name[name].category,
                         hardware=by_name[name].hardware, looks=look, pick=pick)
            for n, (at, name, look, pick) in enumerate(drawn)]


# --- mixes from files --------------------------------------------------------------------------------------


def load_mix(name_or_path: str, *, history_nodes: int | None = None) -> FaultMix:
    """A preset by name, a mix file (JSON or YAML, this module's ``FaultMix``), or a
    ``gpu-recovery report --json`` output (which does not say its fleet's size: ``history_nodes``)."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"fault mix {name_or_path!r} is neither a preset ({', '.join(PRESETS)}) nor a file\n"
                          "fix: give --fault-mix llama3, a mix file or a 'gpu-recovery report --json' output")
    raw = _read(path)
    if isinstance(raw, dict) and "incident_list" in raw:
        return mix_from_report(raw, nodes=history_nodes, name=path.name)
    try:
        return FaultMix.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"fault mix {path} is invalid: {exc}\nfix: see docs/simulate.md for the format") from exc


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"fault mix {path} is not valid {'YAML' if path.suffix != '.json' else 'JSON'}: {exc}\n"
                          "fix: give a JSON or YAML file") from exc


def mix_from_report(report: dict[str, Any], *, nodes: int | None, name: str = "report") -> FaultMix:
    """A fleet's own history as a mix: every incident of the report, by what it looked like.

    An incident whose report found a hardware fault becomes a GPU fault with its XIDs (quarantined or
    replaced: DCGM fails again after a reboot; rebooted and recovered: it passes); an application fault
    keeps its XIDs with a healthy DCGM; a healthy verdict is an NCCL timeout with a healthy DCGM; a
    misconfigured node fails DCGM's deployment checks. Incidents, not job interruptions, are counted
    (one interruption can open several)."""
    if nodes is None:
        raise ConfigError("a 'gpu-recovery report --json' file does not say how many nodes its history covers\n"
                          "fix: give --history-nodes N (the fleet size the report was taken on)")
    incidents = [i for i in report.get("incident_list") or [] if isinstance(i, dict)]
    if not incidents:
        raise ConfigError(f"fault mix {name}: the report has no incident to learn a mix from\n"
                          "fix: report a longer range (--since) or use --fault-mix llama3")
    counts: dict[tuple[str, LooksLike, str, bool], int] = {}
    for incident in incidents:
        key = _looks_of_incident(incident)
        counts[key] = counts.get(key, 0) + 1
    causes = tuple(Cause(name=label, count=count, category=category, hardware=hardware,
                         looks_like=(look,))
                   for (label, look, category, hardware), count in sorted(counts.items(), key=lambda kv: kv[0][0]))
    return FaultMix(name=name, source=f"gpu-recovery report --json ({len(incidents)} incidents)", nodes=nodes,
                    days=_report_days(report, incidents), causes=causes)


def _looks_of_incident(incident: dict[str, Any]) -> tuple[str, LooksLike, str, bool]:
    xids = tuple(sorted(int(x) for x in (incident.get("xids") or {})))
    verdict, outcome = incident.get("verdict"), str(incident.get("outcome") or "")
    out = outcome in ("quarantined", "replaced")
    if verdict == "hardware_fault" or out:
        look = _fault(xids, after="fail" if out else "pass", evidence=bool(xids))
        return f"hardware fault {_xid_label(xids)}{', out of service' if out else ', rebooted'}", look, "gpu", True
    if verdict == "application_fault":
        return f"application fault {_xid_label(xids)}", _fault(xids, dcgm="pass"), "software", False
    if verdict == "misconfigured":
        return "misconfigured node", _fault(dcgm="config", evidence=False), "software", False
    return "healthy node (NCCL timeout)", HEALTHY_NCCL, "unknown", False


def _xid_label(xids: tuple[int, ...]) -> str:
    return f"XID {'/'.join(map(str, xids))}" if xids else "(no XID)"


def _report_days(report: dict[str, Any], incidents: list[dict[str, Any]]) -> float:
    opened = sorted(_when(i.get("opened_at")) for i in incidents if i.get("opened_at"))
    start = _when(report.get("since")) if report.get("since") else (opened[0] if opened else None)
    end = _when(report.get("range_end") or report.get("until")) if (report.get("range_end") or report.get("until")) \
        else (opened[-1] if opened else None)
    if start is None or end is None or end <= start:
        return 1.0  # a history shorter than its own incidents' spread: count it as a day
    return max((end - start).total_seconds() / DAY_S, 1 / 24)


def _when(text: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"the report has a time that is not ISO 8601: {text!r}\nfix: give an unedited "
                          "'gpu-recovery report --json' output") from exc
