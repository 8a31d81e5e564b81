"""The data layer: GLUE tasks and their files, users' own files, sampling and tokenizing, metrics.

``tasks`` (the task table), ``glue`` (the ``glue_data/`` TSV reader and the Hub), ``files`` (users'
CSV/TSV/JSONL), ``source`` (:class:`~trimbert.data.source.DataSource`: which of those a command
reads), ``sampling`` and ``batches`` (seeded samples, tokenized and padded), ``metrics/`` (GLUE's
metrics as a local ``evaluate`` module). Independent of the model layer.
"""
