"""Analytics subscribers: follow the stream (``tail``), and a fleet reliability report (``report``).

Nothing here acts on AWS resources: it reads the stream or its archive and computes figures.
The pure parts (``view``, ``report``, ``catalogue``) do no I/O; ``follow`` and ``sources`` are the adapters.
"""
