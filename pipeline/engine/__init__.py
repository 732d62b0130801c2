"""The run engine: one run from its inputs to its outcome, journaled so that it can be resumed.

``runner.Run`` wires the stages: the reader thread feeds the upload ``pool``; unanswered uploads
go to the ``settle``r; the ``poll``er follows executions; ``reconcile`` checks for duplicates at
the end; the ``recorder`` applies each step to the ``state`` and the ``journal``; ``rundir`` owns
the run directory (locks, rejects, preflight checks).
"""
