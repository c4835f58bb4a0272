"""The recovery policy: pure. ``RecoveryPolicy.handle(state, event)`` returns the effects to record
and the actions to take; the consumer records them on the stream before it acts."""
