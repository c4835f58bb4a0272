"""CloudWatch metrics the alarms watch (namespace GpuRecovery, no dimensions): ParkedRecords,
FailedActions, OpenIncidents. Published at most once a minute per worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("gpu_recovery.metrics")
NAMESPACE = "GpuRecovery"


class Metrics(Protocol):
    def count(self, name: str, value: float) -> None: ...

    def gauge(self, name: str, value: float) -> None: ...

    def flush(self, force: bool = False) -> None: ...


class NullMetrics:
    def count(self, name: str, value: float) -> None:
        """Metrics switched off."""

    def gauge(self, name: str, value: float) -> None:
        """Metrics switched off."""

    def flush(self, force: bool = False) -> None:
        """Metrics switched off."""


class CloudWatchMetrics:
    def __init__(self, client: Any, *, interval_s: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._interval = interval_s
        self._monotonic = monotonic
        self._counts: dict[str, float] = {}
        self._gauges: dict[str, float] = {}
        self._last = monotonic()

    def count(self, name: str, value: float) -> None:
        self._counts[name] = self._counts.get(name, 0.0) + value

    def gauge(self, name: str, value: float) -> None:
        self._gauges[name] = value

    def flush(self, force: bool = False) -> None:
        if not force and self._monotonic() - self._last < self._interval:
            return
        data = [{"MetricName": k, "Value": v, "Unit": "Count"} for k, v in {**self._counts, **self._gauges}.items()]
        self._last = self._monotonic()
        if not data:
            return
        try:
            self._client.put_metric_data(Namespace=NAMESPACE, MetricData=data)
            self._counts.clear()
        except Exception as exc:
            log.warning("could not publish metrics: %s", exc)
