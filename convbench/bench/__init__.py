"""The benchmark harness: what is measured, how it is timed, how it is stored and judged.

- what: ``problems`` (one conv or pooling problem, its FLOPs and inputs) and ``suites``
  (problem lists kept as data: CSV files and benchdnn batch files);
- how: ``timing`` (threads, clocks, peaks), ``interleave`` (the turn order), ``machine`` (the
  calibration workload and CPU contention), ``runner`` (``convbench run``) and ``ab`` with its
  worker (``convbench ab``: two git revisions side by side);
- kept: ``results`` (run directories, schema 2, pytest-benchmark JSON);
- judged: ``stats`` (pure functions on arrays), ``compare``, ``report``, ``plots``, ``targets``.

It knows backends only through ``kernels``' public registry, and nothing of the network.
"""
