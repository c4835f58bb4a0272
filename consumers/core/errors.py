"""Errors the core and its adapters share; adapters translate driver errors into these."""


class GpuRecoveryError(Exception):
    """Base of our own errors."""


class TransientError(GpuRecoveryError):
    """Worth retrying as it is: throttling, timeouts, a conflicting concurrent write."""


class ConfigError(GpuRecoveryError):
    """A setting is missing or wrong; the message names the setting and the fix."""


class UnwritableItem(GpuRecoveryError):
    """The store cannot hold an item (or look up a key) that a record produced: the record is at fault, not
    the store. Raised before anything is written, so a batch that raises it has changed nothing."""

    def __init__(self, key: tuple[str, str], problem: str) -> None:
        super().__init__(f"{key[0]} item {key[1][:80]!r}: {problem}")
        self.key = key
        self.problem = problem


# Exceptions from these packages concern the call, never the record: the core cannot import botocore,
# and a record reaches the SDK only after the adapter has checked what it made of it.
_INFRASTRUCTURE_MODULES = ("botocore", "boto3", "urllib3", "s3transfer")


def is_infrastructure(exc: BaseException) -> bool:
    """True for an error that says nothing about the record being processed (throttling, the network,
    AWS refusing the request for its own reasons, memory): retry it or stop, but never park a record for it."""
    if isinstance(exc, TransientError | ConfigError | OSError | MemoryError):
        return True
    module = type(exc).__module__ or ""
    return module.split(".")[0] in _INFRASTRUCTURE_MODULES
