"""The Change Queue: persistent change records and the one-at-a-time runner."""
