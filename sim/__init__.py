"""The simulator: what a region-blocking rollout does to a whole market, with uncertainty.

Public API (the demo and the reports call these)::

    from sim.run import simulate, replicate      # run dir, or results in memory
    from sim.sweep import sweep                   # a grid of scenarios, pool or Dask
    from sim.queueing import fcfs, erlang_b, erlang_c, mmck   # request-level queueing + theory

Modules, one concern each:

- :mod:`sim.population`  organisations as arrays (shared ids with the load test)
- :mod:`sim.profile`     diurnal/weekly intensity by region, integrated per hour
- :mod:`sim.model`       organisations as SimPy agents (block, anticipation, decisions)
- :mod:`sim.pieces`      timelines → intervals of constant fate (one policy decision each)
- :mod:`sim.traffic`     Poisson counts per cohort and bin, split to organisations and pieces
- :mod:`sim.capacity`    offered load per provider and hour, M/M/c/K 429s and waits
- :mod:`sim.queueing`    the request-level FCFS multi-server engine and Erlang formulas
- :mod:`sim.outcome`     denials, failures, retries, tokens, revenue per cell
- :mod:`sim.latency`     request-level latency samples and percentiles
- :mod:`sim.replication` one replication = policy run + baseline over common random numbers
- :mod:`sim.headline`    headline figures and the waterfall of one replication
- :mod:`sim.summary`     bands over replications, hot spots, checks (summary.json)
- :mod:`sim.metrics`     timeseries.csv rows
- :mod:`sim.run`         replications in a process pool, the run directory
- :mod:`sim.sweep`       parameter grids
"""
