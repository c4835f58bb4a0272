"""NVML's counters through nvidia-ml-py, every call guarded: GPU count, uncorrectable ECC, row remapping,
retired pages, NVLink state.

``collect`` takes an ``NvmlApi`` (the handle provider) so tests feed a fake; ``PynvmlApi`` is the real one.
A library that cannot load gives ``Inconclusive``; an unsupported counter is None (not a fault); a GPU
that answers "GPU is lost" is marked lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeVar

from healthcheck.findings import GpuNvml, Inconclusive, NvmlOutcome, NvmlReport

ErrorKind = Literal["not_supported", "invalid_argument", "gpu_lost", "other"]
T = TypeVar("T")


class NvmlUnavailable(Exception):
    """The NVML library or the driver could not be loaded."""


class NvmlCallError(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class NvmlDevice(Protocol):
    def uuid(self) -> str: ...
    def pci_bus_id(self) -> str: ...
    def uncorrectable_ecc_volatile(self) -> int: ...
    def remapped_rows(self) -> tuple[bool, bool]:
        """(pending, failure occurred)."""
        ...
    def retired_pages(self) -> tuple[int, bool]:
        """(pages retired for any cause, retirement pending)."""
        ...
    def nvlink_states(self) -> dict[int, bool]:
        """link index -> active, for the links this GPU has."""
        ...


class NvmlApi(Protocol):
    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def driver_version(self) -> str: ...
    def device_count(self) -> int: ...
    def device(self, index: int) -> NvmlDevice: ...


def collect(api: NvmlApi) -> NvmlOutcome:
    try:
        api.init()
    except NvmlUnavailable as exc:
        return Inconclusive("nvml", f"NVML could not be loaded: {exc}")
    try:
        return _collect(api)
    finally:
        with contextlib.suppress(NvmlUnavailable, NvmlCallError):
            api.shutdown()  # nothing left to do with it either way


def _collect(api: NvmlApi) -> NvmlOutcome:
    try:
        count = api.device_count()
    except NvmlCallError as exc:
        return Inconclusive("nvml", f"NVML device count failed: {exc}")
    driver, _ = _guard(api.driver_version)
    return NvmlReport(driver, count, tuple(_gpu(api, index) for index in range(count)))


def _gpu(api: NvmlApi, index: int) -> GpuNvml:
    try:
        device = api.device(index)
    except NvmlCallError as exc:
        return GpuNvml(index, lost=exc.kind == "gpu_lost", call_errors=(f"handle: {exc}",))
    errors: list[str] = []
    lost = False

    def read(name: str, call: Callable[[], T]) -> T | None:
        nonlocal lost
        value, error = _guard(call)
        if error is not None:
            lost = lost or error.kind == "gpu_lost"
            errors.append(f"{name}: {error}")
        return value

    uuid = read("uuid", device.uuid)
    pci = read("pci_bus_id", device.pci_bus_id)
    ecc = read("ecc", device.uncorrectable_ecc_volatile)
    remap = read("row_remap", device.remapped_rows)
    retired = read("retired_pages", device.retired_pages)
    links = read("nvlink", device.nvlink_states) or {}
    return GpuNvml(
        index=index, uuid=uuid, pci_bus_id=pci, uncorrectable_ecc_volatile=ecc,
        row_remap_pending=remap[0] if remap else None, row_remap_failed=remap[1] if remap else None,
        retired_pages=retired[0] if retired else None, retired_pages_pending=retired[1] if retired else None,
        nvlink_active=sum(links.values()) if links else None,
        nvlink_down=tuple(sorted(link for link, up in links.items() if not up)),
        lost=lost, call_errors=tuple(errors),
    )


def _guard(call: Callable[[], T]) -> tuple[T | None, NvmlCallError | None]:
    """Unsupported counters read as None without an error; other failures are kept for the reason."""
    try:
        return call(), None
    except NvmlCallError as exc:
        return None, (None if exc.kind == "not_supported" else exc)


# ---- the real library ------------------------------------------------------------------------------------
class PynvmlApi:
    """nvidia-ml-py, imported only when used (the CLI's --help must not load it)."""

    def __init__(self) -> None:
        self._nvml: Any = None

    def init(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise NvmlUnavailable(f"nvidia-ml-py is not installed ({exc})") from exc
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(str(exc)) from exc
        self._nvml = pynvml

    def shutdown(self) -> None:
        if self._nvml is not None:
            self._call(self._nvml.nvmlShutdown)

    def driver_version(self) -> str:
        return _text(self._call(self._nvml.nvmlSystemGetDriverVersion))

    def device_count(self) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetCount))

    def device(self, index: int) -> NvmlDevice:
        return _PynvmlDevice(self, self._call(self._nvml.nvmlDeviceGetHandleByIndex, index))

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        nvml = self._nvml
        try:
            return fn(*args)
        except nvml.NVMLError as exc:
            raise NvmlCallError(_kind(nvml, exc), str(exc)) from exc


class _PynvmlDevice:
    def __init__(self, api: PynvmlApi, handle: Any) -> None:
        self._api = api
        self._nvml: Any = api._nvml
        self._handle = handle

    def uuid(self) -> str:
        return _text(self._api._call(self._nvml.nvmlDeviceGetUUID, self._handle))

    def pci_bus_id(self) -> str:
        info = self._api._call(self._nvml.nvmlDeviceGetPciInfo, self._handle)
        return _text(info.busId)

    def uncorrectable_ecc_volatile(self) -> int:
        n = self._nvml
        return int(self._api._call(n.nvmlDeviceGetTotalEccErrors, self._handle,
                                   n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, n.NVML_VOLATILE_ECC))

    def remapped_rows(self) -> tuple[bool, bool]:
        _corr, _unc, pending, failed = self._api._call(self._nvml.nvmlDeviceGetRemappedRows, self._handle)
        return bool(pending), bool(failed)

    def retired_pages(self) -> tuple[int, bool]:
        n = self._nvml
        pages = 0
        for cause in (n.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,
                      n.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR):
            pages += len(self._api._call(n.nvmlDeviceGetRetiredPages, self._handle, cause))
        pending = self._api._call(n.nvmlDeviceGetRetiredPagesPendingStatus, self._handle)
        return pages, bool(pending)

    def nvlink_states(self) -> dict[int, bool]:
        n = self._nvml
        states: dict[int, bool] = {}
        for link in range(int(n.NVML_NVLINK_MAX_LINKS)):
            try:
                state = self._api._call(n.nvmlDeviceGetNvLinkState, self._handle, link)
            except NvmlCallError as exc:
                if exc.kind in ("not_supported", "invalid_argument"):
                    continue  # this GPU has no such link
                raise
            states[link] = state == n.NVML_FEATURE_ENABLED
        if not states:
            raise NvmlCallError("not_supported", "no NVLink on this GPU")
        return states


def _kind(nvml: Any, exc: Any) -> ErrorKind:
    value = getattr(exc, "value", None)
    if value == nvml.NVML_ERROR_NOT_SUPPORTED:
        return "not_supported"
    if value == nvml.NVML_ERROR_INVALID_ARGUMENT:
        return "invalid_argument"
    if value == nvml.NVML_ERROR_GPU_IS_LOST:
        return "gpu_lost"
    return "other"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
