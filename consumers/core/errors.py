"""Errors the core and its adapters share; adapters translate driver errors into these."""


class GpuRecoveryError(Exception):
    """Base of our own errors."""


class TransientError(GpuRecoveryError):
    """Worth retrying as it is: throttling, timeouts, a conflicting concurrent write."""


class ConfigError(GpuRecoveryError):
    """A setting is missing or wrong; the message names the setting and the fix."""
