#!/bin/sh
# dcgmi health needs a running host engine (dcgmi diag can start an embedded one). With host networking a
# node-wide nv-hostengine (e.g. dcgm-exporter's) answers on 127.0.0.1:5555 and is reused; otherwise start
# one here: it daemonizes and ends with the container. If it cannot start, the agent still runs and reports
# the health part as inconclusive, never as healthy.
set -u
if ! dcgmi discovery -l >/dev/null 2>&1; then
    nv-hostengine >/dev/null 2>&1 || echo "healthcheck: could not start nv-hostengine" >&2
fi
exec "$@"
