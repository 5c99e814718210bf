"""The dispatch pipeline: the work-item (one issue) state machine.

Pure core; performs no I/O and reads no clock. `machine.decide(item, event, now, config)`
returns the new item and the commands (effects as data, each with a deterministic
idempotency key) that a runner performs as durable jobs, feeding results back as events.
See docs/pipeline.md.
"""
