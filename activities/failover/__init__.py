"""Provider failover for channels with several providers, and a circuit breaker per provider.

- `breaker`: the per-provider circuit breaker, shared by every delivery on a worker.
- `route`: one delivery's way through its channel's providers, attempt by attempt.
- `chains`: which providers each channel tries, built from the worker's settings.

The workflow does not take part: one `deliver` activity per destination picks its provider at
each attempt, so the workflow's commands (and the replay of recorded histories) do not change.
"""
