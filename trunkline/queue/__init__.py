"""The merge queue: a pure engine `step(state, event, now) -> (state, effects)` and the
effect runner, the only part that touches GitHub and git."""
