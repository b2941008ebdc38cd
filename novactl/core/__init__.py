"""The pure core: gate evaluation, rollout state and the state machine.

Nothing in here performs I/O or reads the clock; everything is a function of
(plan, state, observations, now).
"""
