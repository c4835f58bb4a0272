"""The recovery core: pure. ``decide(records, inputs, now)`` returns the events to record and the commands
to run; ``record.fold_event`` folds the stream into the same records for replay. Read the transition
tables at the top of ``jobs``, ``incidents`` and ``nodes``."""
