"""Pure: events in, state and commands out. No I/O, no clock, no randomness, no boto3."""
