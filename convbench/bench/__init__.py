"""The benchmark harness's own room: statistics, the machine's state, interleaving and A/B.

Pure functions on arrays live in ``stats``; what the machine is doing (a calibration workload,
CPU contention) in ``machine``; the order in which measurements take turns in ``interleave``;
``convbench ab`` (two git revisions measured side by side) in ``ab`` and its worker.
"""
