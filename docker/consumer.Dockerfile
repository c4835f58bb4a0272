# The consumer image: gpu-recovery and the KCL 3 MultiLangDaemon (the jars amazon-kclpy 3.1.3 downloads
# from Maven Central while it builds) on a Java 17 runtime. Build from the repository root:
#
#   docker build -f docker/consumer.Dockerfile -t gpu-recovery-consumer .
#   docker run --rm -e GPU_RECOVERY_STREAM_NAME=... gpu-recovery-consumer projector --engine kcl
#
# The CDK stack's Fargate services run `gpu-recovery consume <projector|recovery> --engine kcl`; every
# task is one KCL worker (docs/kcl.md). ECS sends SIGTERM on stop: the CLI passes it to the daemon, which
# asks the shard processors for a last checkpoint within shutdownGraceMillis (25 s < ECS's 30 s).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The JRE's post-install script needs the man folder that slim images leave out.
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/gpu-recovery/src
COPY pyproject.toml README.md ./
COPY events_schema ./events_schema
COPY consumers ./consumers
COPY replay ./replay
COPY infra ./infra
COPY local ./local
COPY gpu_recovery ./gpu_recovery
COPY healthcheck ./healthcheck
COPY analytics ./analytics
# --no-binary: amazon-kclpy fetches its jars in its own build; a wheel cached elsewhere may lack them.
RUN pip install --no-binary amazon-kclpy . \
    && python -c "from consumers.runtime.kcl_daemon import jar_classpath; jar_classpath()" \
    && java -version \
    && gpu-recovery consume --help >/dev/null

# No root at run time; the processors need nothing on disk but a temporary folder for the properties.
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin kcl
USER 10001
WORKDIR /tmp

ENTRYPOINT ["gpu-recovery", "consume"]
CMD ["projector", "--engine", "kcl"]
