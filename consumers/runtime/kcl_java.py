"""Where the MultiLangDaemon comes from: amazon-kclpy's jars and a Java runtime, and its command line.

A missing piece is a KclSetupError whose message says how to install it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

KCLPY_VERSION = "3.1.3"
MULTILANG_DAEMON_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
MULTILANG_JAR_PREFIX = "amazon-kinesis-client-multilang-"

# Lean JVM for tests and small tasks: fast start, small heap, one GC thread.
LEAN_JVM_ARGS: tuple[str, ...] = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xms64m", "-Xmx256m")


class KclSetupError(RuntimeError):
    """The machine lacks something the MultiLangDaemon needs."""


class KclJarsMissingError(KclSetupError):
    """amazon-kclpy's jars (the KCL and its dependencies) are not installed."""


class JavaMissingError(KclSetupError):
    """No Java runtime to run the MultiLangDaemon."""


def kclpy_jars_dir() -> Path:
    """``<site-packages>/amazon_kclpy/jars`` located without importing amazon_kclpy."""
    spec = importlib.util.find_spec("amazon_kclpy")
    if spec is None or not spec.submodule_search_locations:
        raise KclJarsMissingError(_jars_hint("the amazon_kclpy package is not installed"))
    return Path(next(iter(spec.submodule_search_locations))) / "jars"


def _jars_hint(problem: str) -> str:
    return (
        f"{problem}: run `bash .ci/install-kcl.sh`, or reinstall with "
        f"`pip install --force-reinstall --no-cache-dir amazon-kclpy=={KCLPY_VERSION}` "
        "(its build downloads the KCL jars from Maven Central)"
    )


def jar_paths(jars_dir: Path | None = None) -> list[Path]:
    """All KCL jars, sorted; raises KclJarsMissingError if the multilang jar is absent."""
    folder = jars_dir if jars_dir is not None else kclpy_jars_dir()
    jars = sorted(folder.glob("*.jar"))
    if not any(jar.name.startswith(MULTILANG_JAR_PREFIX) for jar in jars):
        raise KclJarsMissingError(_jars_hint(f"no {MULTILANG_JAR_PREFIX}*.jar in {folder}"))
    return jars


def jar_classpath(jars_dir: Path | None = None) -> str:
    """The Java classpath of amazon-kclpy's jars."""
    return os.pathsep.join(str(jar) for jar in jar_paths(jars_dir))


def resolve_java(java: str = "java") -> str:
    """Absolute path of the java executable; raises JavaMissingError with an install hint."""
    found = shutil.which(java)
    if found is None:
        raise JavaMissingError(
            f"{java!r} was not found: install a Java 17 runtime "
            "(e.g. `apt-get install openjdk-17-jre-headless`) or pass java=/path/to/java"
        )
    return found


def daemon_command(
    properties_path: Path,
    java: str = "java",
    *,
    jvm_args: Iterable[str] = (),
    log_configuration: Path | None = None,
    jars_dir: Path | None = None,
) -> list[str]:
    """argv that runs the MultiLangDaemon on ``properties_path`` (an absolute path works)."""
    command = [
        resolve_java(java),
        *jvm_args,
        "-cp",
        jar_classpath(jars_dir),
        MULTILANG_DAEMON_CLASS,
        "--properties-file",
        str(Path(properties_path).resolve()),
    ]
    if log_configuration is not None:
        command += ["--log-configuration", str(Path(log_configuration).resolve())]
    return command
