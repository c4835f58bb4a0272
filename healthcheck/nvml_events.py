"""NVML's XID events through nvidia-ml-py: the real ``XidSource`` of the node watcher.

``nvmlEventSetCreate``, ``nvmlDeviceRegisterEvents(handle, nvmlEventTypeXidCriticalError, set)`` on every GPU
that supports it, then ``nvmlEventSetWait_v2(set, timeout_ms)``: each event carries the XID in ``eventData``
and the GPU's handle. Imported only when the watcher starts (the CLI's --help must not load NVML).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from healthcheck.nvml import NvmlUnavailable
from healthcheck.watch import FELL_OFF_BUS_XID, XidEvent

log = logging.getLogger(__name__)
NO_INSTANCE = 0xFFFFFFFF  # NVML's "not a MIG instance"


class PynvmlXidSource:
    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise NvmlUnavailable(f"nvidia-ml-py is not installed ({exc})") from exc
        self._nvml: Any = pynvml
        try:
            pynvml.nvmlInit()
            self._set = pynvml.nvmlEventSetCreate()
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(str(exc)) from exc
        self._register_all()

    def _register_all(self) -> None:
        n = self._nvml
        for index in range(int(n.nvmlDeviceGetCount())):
            try:
                handle = n.nvmlDeviceGetHandleByIndex(index)
                if n.nvmlDeviceGetSupportedEventTypes(handle) & n.nvmlEventTypeXidCriticalError:
                    n.nvmlDeviceRegisterEvents(handle, n.nvmlEventTypeXidCriticalError, self._set)
                else:
                    log.warning("GPU %d does not report XID events through NVML", index)
            except n.NVMLError as exc:
                log.error("GPU %d: cannot listen for XID events: %s", index, exc)

    def wait(self, timeout_s: float) -> list[XidEvent]:
        n = self._nvml
        try:
            data = n.nvmlEventSetWait_v2(self._set, max(0, int(timeout_s * 1000)))
        except n.NVMLError as exc:
            if exc.value == n.NVML_ERROR_TIMEOUT:
                return []
            if exc.value == n.NVML_ERROR_GPU_IS_LOST:
                return [XidEvent(FELL_OFF_BUS_XID, None)]
            log.error("waiting for NVML events failed: %s", exc)
            time.sleep(max(0.0, timeout_s))  # do not spin on a failing call
            return []
        if not data.eventType & n.nvmlEventTypeXidCriticalError:
            return []
        return [XidEvent(int(data.eventData), self._index(data.device), self._instance(data))]

    def _index(self, handle: Any) -> int | None:
        try:
            return int(self._nvml.nvmlDeviceGetIndex(handle))
        except self._nvml.NVMLError:
            return None

    @staticmethod
    def _instance(data: Any) -> int | None:
        value = int(getattr(data, "gpuInstanceId", NO_INSTANCE))
        return None if value == NO_INSTANCE else value

    def close(self) -> None:
        n = self._nvml
        try:
            n.nvmlEventSetFree(self._set)
            n.nvmlShutdown()
        except n.NVMLError as exc:
            log.info("NVML shutdown: %s", exc)
