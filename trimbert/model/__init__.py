"""The model layer: trimmed BERT modules, their config and classes, the surgery, checkpoint io.

Inside, imports point down this list: ``attention`` and ``structure`` (modules a trim puts in a
model), ``modeling`` (TrimBert config and classes, Auto registration), ``calibrate`` (fitting affine
LayerNorm replacements; similarity of hidden states), ``trim`` (the surgery: request -> trimmed
model), ``portable`` (checkpoints that load without trimbert: plain BERT where it can describe the
trim, else generated remote code), ``checkpoint`` (load and save, aliases; atomic output folders from :mod:`trimbert.core.outputs`), ``heads`` (does a checkpoint
carry a trained task head). The layer uses :mod:`trimbert.spec` and nothing above it.
"""
