"""The DCGM health-check agent that runs on a suspect GPU node (DESIGN sections 2 and 5), and the node watcher.

The agent runs ``dcgmi diag`` and ``dcgmi health``, reads NVML counters and the driver's messages in the kernel
log, turns them into exactly one verdict (``verdict.decide``, pure), and reports it as a signed
``HealthCheckReported`` event on the stream, on stdout, and as its exit code (0 usable, 1 needs repair,
2 inconclusive, 3 misconfigured). The watcher (``watch``) runs on every GPU node and reports a
``GpuHealthSignal`` per new degradation.
"""
