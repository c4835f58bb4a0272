"""The DCGM health-check agent that runs on a suspect GPU node (DESIGN sections 2 and 5).

It runs ``dcgmi diag`` and ``dcgmi health``, reads NVML counters and the kernel's XID lines, turns them into
exactly one verdict (``verdict.decide``, pure), and reports it as a ``HealthCheckReported`` event on the
stream, on stdout, and as its exit code (0 healthy, 1 fault, 2 inconclusive).
"""
