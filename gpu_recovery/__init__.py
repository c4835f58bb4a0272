"""The composition root: settings, wiring, and the ``gpu-recovery`` command line."""
