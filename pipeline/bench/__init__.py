"""``pipeline bench``: synthetic documents through the normal machinery, measured per sweep point.

A stage above ``engine/`` and ``reporting/`` and below ``cli/``: ``generator`` (synthetic valid
documents), ``sweep`` (the points), ``target`` (the emulator a bench starts, the safety check),
``measures`` (one point's figures from its run report), ``bound`` (what no client can beat),
``recommendation`` (the best point, the estimate and what limits it), ``bench_html`` and ``table``
(the outputs), ``heartbeat`` (a progress line now and then), ``runner`` (the whole bench) and
``cleanup`` (deletion imports of what a bench wrote).
"""
