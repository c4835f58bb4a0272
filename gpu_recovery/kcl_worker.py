"""The record-processor executable the KCL MultiLangDaemon runs once per shard lease.

    python -m gpu_recovery.kcl_worker projector|recovery [--log-level INFO]

A composition root like ``gpu_recovery.cli``: it reads the settings from the environment the daemon
passes through, builds the consumer's batch handler with the wiring, and hands it to
``consumers.runtime.kcl_entry.serve`` (the protocol, with stdout kept for it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from consumers.runtime.kcl_entry import serve
from consumers.runtime.processor import BatchHandler
from gpu_recovery.aws import AwsClients


def build_handler(consumer: str, clients: AwsClients | None = None, *, owner: str | None = None) -> BatchHandler:
    """The consumer's batch handler; clients default to settings read from the environment.

    ``owner``: the recovery consumer's outbox owner when one process reads every shard (under the KCL each
    shard's processor owns its own)."""
    from gpu_recovery import wiring
    from gpu_recovery.settings import load_settings

    clients = clients if clients is not None else AwsClients(load_settings())
    if consumer == "projector":
        return wiring.build_projector(clients)
    return wiring.build_recovery(clients, owner=owner)


def main(argv: Sequence[str] | None = None) -> int:
    return serve(argv, build_handler)


if __name__ == "__main__":
    sys.exit(main())
