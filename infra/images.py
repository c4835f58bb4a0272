"""Container images: a prebuilt image when configured, else built from the checkout at deploy time.

Synthesis never runs Docker: an asset is only staged (copied into cdk.out); ``cdk deploy`` builds and
pushes it to the bootstrap repository.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs

from consumers.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONSUMER_DOCKERFILE = "docker/consumer.Dockerfile"
HEALTH_CHECK_DOCKERFILE = "healthcheck/Dockerfile"

# Never part of a build context: environments, tool output, caches, VCS.
BUILD_CONTEXT_EXCLUDES = [
    ".git", ".venv", "node_modules", "cdk.out", ".local", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    ".hypothesis", "**/__pycache__", "*.egg-info", "build", "dist",
]


def container_image(*, configured: str | None, source_root: Path, dockerfile: str, setting: str) -> ecs.ContainerImage:
    """``configured`` (an image URI) wins; otherwise the Dockerfile under ``source_root`` is built at deploy.

    The build context is the repository root, so a Dockerfile can install the project itself.
    """
    if configured:
        return ecs.ContainerImage.from_registry(configured)
    if not (source_root / dockerfile).is_file():
        raise ConfigError(
            f"{dockerfile} not found under {source_root}: deploy from a checkout that has it, or give a "
            f"prebuilt image with -c {setting}=IMAGE_URI (environment variable GPU_RECOVERY_{setting.upper()})."
        )
    return ecs.ContainerImage.from_asset(
        str(source_root),
        file=dockerfile,
        exclude=BUILD_CONTEXT_EXCLUDES,
        # Fargate and the GPU nodes run x86_64; an ARM laptop would otherwise build arm64.
        platform=ecr_assets.Platform.LINUX_AMD64,
    )
