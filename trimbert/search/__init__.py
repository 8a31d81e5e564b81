"""Search: the most accurate trim under a latency budget (AutoTinyBERT's question, per-block trims).

:mod:`~trimbert.search.space` is what may be trimmed, :mod:`~trimbert.search.predictor` what a trim costs
(an additive model fitted on probe timings that :mod:`~trimbert.search.latency` measures and caches),
:mod:`~trimbert.search.estimator` what it keeps (a one-shot weight-sharing super-model scored by masking),
:mod:`~trimbert.search.evolve` the evolutionary search and the Pareto front, :mod:`~trimbert.search.budget`
the plan that fits a search in its budget (from the unit costs :mod:`~trimbert.search.costs` measures), and
:mod:`~trimbert.search.run` the whole ``trimbert search``, which writes :mod:`~trimbert.search.outputs`.
"""
