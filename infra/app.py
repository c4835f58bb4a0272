"""The CDK app: ``npx cdk synth`` runs ``python -m infra.app`` (see cdk.json).

Configuration: cdk context > environment > defaults, for the runtime Settings (table names, cluster,
topic: the old tool's variables keep working) and for InfraConfig (infra/config.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from consumers.core.errors import ConfigError
from gpu_recovery.settings import Settings
from infra.config import InfraConfig, load_infra_config, load_runtime_settings
from infra.images import REPO_ROOT
from infra.stack import GpuRecoveryStack


def build(app: App, *, environ: Mapping[str, str], source_root: Path = REPO_ROOT) -> GpuRecoveryStack:
    """Validate the configuration and add the stack to ``app`` (its context is the cdk context)."""
    context = _context(app)
    settings = load_runtime_settings(context)
    config = load_infra_config(context, environ)
    stack = GpuRecoveryStack(app, config.stack_name, settings=settings, config=config, source_root=source_root,
                             env=_environment(config))
    if _flag(context.get("nag", True)):
        # cdk-nag 3 (AwsSolutions) runs as a CDK policy-validation plugin: an unacknowledged finding
        # fails synthesis. Acknowledgments (infra/nag.py) are also written into the template's Metadata.
        checks = AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
        Validations.of(app).add_plugins(checks)
    return stack


def _context(app: App) -> dict[str, Any]:
    keys = {*InfraConfig.model_fields, *Settings.model_fields, "nag"}
    return {key: app.node.try_get_context(key) for key in keys}


def _environment(config: InfraConfig) -> Environment | None:
    if config.account is None and config.region is None:
        return None  # environment-agnostic: CloudFormation fills in the account and region
    return Environment(account=config.account, region=config.region)


def _flag(value: Any) -> bool:
    return str(value).strip().lower() not in {"false", "0", "no", "off"}


def main() -> int:
    app = App()
    try:
        build(app, environ=os.environ)
    except ConfigError as exc:
        print(f"gpu-recovery infra: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
