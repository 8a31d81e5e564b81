"""Sweeps: a TOML recipe of variants (``recipe``: schema and whole-file validation), the plan of which
units run, resume and shards (``plan``), and the runner that fine-tunes, benches and records each
unit (``run``)."""
