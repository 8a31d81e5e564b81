"""Retraining-free compression (Kwon et al. 2022): prune heads and FFN neurons to a latency budget, no training.

Modules, each one job (the Fisher scores come from :mod:`trimbert.importance.fisher`):
:mod:`~trimbert.compress.cost` (the linear latency cost read off a predictor),
:mod:`~trimbert.compress.masks` (the mask search and Kwon's rearrangement),
:mod:`~trimbert.compress.lstsq` (the layer-wise least-squares scales and their folding),
:mod:`~trimbert.compress.run` (:func:`compress_model`, the whole pipeline ending in a physical trim).
These are library functions (no printing) and import nothing from :mod:`trimbert.search`: a latency
model comes in as a cost (:func:`~trimbert.compress.cost.linear_cost`).
"""

from trimbert.compress.cost import LinearCost, linear_cost, model_units
from trimbert.compress.lstsq import LayerFix, Scales, fit_scales, fold_scales
from trimbert.compress.masks import MaskPlan, greedy_rearrange, rearrange, search_masks
from trimbert.compress.run import CompressReport, compress_model
from trimbert.importance.fisher import FisherScores, fisher_scores

__all__ = [
    "CompressReport",
    "FisherScores",
    "LayerFix",
    "LinearCost",
    "MaskPlan",
    "Scales",
    "compress_model",
    "fisher_scores",
    "fit_scales",
    "fold_scales",
    "greedy_rearrange",
    "linear_cost",
    "model_units",
    "rearrange",
    "search_masks",
]
