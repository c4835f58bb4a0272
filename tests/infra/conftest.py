"""Synthesize once per configuration and share it: synthesis takes seconds on this machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.images import CONSUMER_DOCKERFILE, HEALTH_CHECK_DOCKERFILE
from tests.infra.support import REQUIRED_CONTEXT, TURNED_CONTEXT, Synth, synthesize


@pytest.fixture(scope="session")
def source_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("source")
    for dockerfile in (CONSUMER_DOCKERFILE, HEALTH_CHECK_DOCKERFILE):
        (root / dockerfile).parent.mkdir(parents=True, exist_ok=True)
        (root / dockerfile).write_text("FROM scratch\n")
    return root


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory, source_root: Path) -> Iterator[Synth]:
    """The stack with every default: what `npx cdk synth -c gpu_task_families=...` gives (the one setting
    without a default)."""
    yield synthesize(tmp_path_factory.mktemp("cdk.out"), source_root, context=REQUIRED_CONTEXT)


@pytest.fixture(scope="session")
def turned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    """Every knob turned, prebuilt images: the source folder has no Dockerfile at all."""
    empty = tmp_path_factory.mktemp("no-dockerfiles")
    yield synthesize(tmp_path_factory.mktemp("cdk.out"), empty, context=TURNED_CONTEXT)
