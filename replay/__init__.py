"""Replay and audit: rebuild the projections from the stream or its archive, and explain decisions.

Replay folds history with the very core the live projector uses (``consumers.core.projection``) and
never acts: nothing here imports an actuator or the recovery consumer (a test keeps it so).
"""
