"""Importance: how much each unit of a model matters, and what to cut because of it.

One interface: every rule returns an :class:`~trimbert.importance.scores.Importance` (per-unit scores,
higher = more important, and the orders a trim reads off them), and :func:`~trimbert.importance.rules.score`
runs any rule by name. Modules, each one job, top to bottom:

- ``select``: ``--drop-ffn auto:N`` and the neuron orders of ``--ffn-width`` from the scores;
- ``rules``: :func:`~trimbert.importance.rules.score`, the rules by name;
- ``cut``: the cut analysis (``trimbert analyze``): FFNs, LayerNorms, heads and the normalizer cut
  out one at a time; ``fisher``: Fisher information of heads and neurons (Kwon et al. 2022);
  ``taylor``: first- or second-order Taylor scores of every unit; ``magnitude``: weight norms, no data;
- ``gradients``: per-batch gradients of the objective with respect to every gate;
- ``objective`` (task loss, or a random projection of the final hidden states), ``similarity``
  (linear CKA, mean cosine), ``scores`` (:class:`~trimbert.importance.scores.Importance`).

The data-free primitives a trim itself needs (weight-magnitude scores, top-k selection) sit below, in
:mod:`trimbert.model.ranking`.
"""
