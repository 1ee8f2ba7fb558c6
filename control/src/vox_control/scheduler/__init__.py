"""The scheduler: one load loop, the memory budget, measurement, runner loading."""
