"""Records and reports: the one record schema (``records``, written with :mod:`trimbert.core.io`),
aggregation of records into report rows with baselines, ratios, mean ± std and Pareto marks
(``aggregate``), and rendering as rich/Markdown tables, CSV/JSON files (``tables``) and plots
(``plots``) in ``render``. Depends on nothing but :mod:`trimbert.core` and :mod:`trimbert.errors`, so
every layer may write records."""
