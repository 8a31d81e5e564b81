"""Search: the most accurate trim under a latency budget (AutoTinyBERT's question, per-block trims).

:mod:`~trimbert.search.space` is what may be trimmed, :mod:`~trimbert.search.latency` what a trim costs
(a fitted, cached predictor), :mod:`~trimbert.search.estimator` what it keeps (a one-shot weight-sharing
super-model scored by masking), :mod:`~trimbert.search.evolve` the evolutionary search and the Pareto
front, and :mod:`~trimbert.search.run` the whole ``trimbert search`` with its outputs.
"""
