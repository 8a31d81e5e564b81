"""GLUE metrics as a local ``evaluate`` module, so that no Hub access is needed.

Load it by path: ``evaluate.load("<...>/trimbert/data/metrics/glue", config_name)``. The folder name equals
the script name, as ``evaluate.load`` requires for a folder path. This script must stay
self-contained: ``evaluate`` copies it alone into its module cache before importing it.

The definitions follow the official GLUE metric: accuracy; F1 of the positive class 1 (binary);
Matthews correlation (scikit-learn); Pearson and Spearman correlation (SciPy). Results are plain floats.
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

_DESCRIPTION = """GLUE metrics (accuracy, F1, Matthews correlation, Pearson and Spearman correlation) for the
nine GLUE tasks and for users' own classification or regression data sets."""

_CITATION = """@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle={International Conference on Learning Representations},
  year={2019}
}"""

_INPUTS_DESCRIPTION = """
Args:
    predictions: predicted label ids (classification) or scores (regression configs stsb, user-regression).
    references: gold label ids or scores.
Returns: a dict of plain floats, depending on the config:
    cola: matthews_correlation; sst2, mnli, qnli, rte, wnli, user-multiclass: accuracy;
    mrpc, qqp, user-binary: accuracy and f1; stsb, user-regression: pearson and spearmanr.
"""


def _accuracy(predictions, references):
    return {"accuracy": float((predictions == references).mean())}


def _accuracy_and_f1(predictions, references):
    return {
        **_accuracy(predictions, references),
        "f1": float(f1_score(y_true=references, y_pred=predictions)),
    }


def _matthews(predictions, references):
    return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}


def _pearson_and_spearman(predictions, references):
    return {
        "pearson": float(pearsonr(predictions, references)[0]),
        "spearmanr": float(spearmanr(predictions, references)[0]),
    }


# config name -> (function computing the metrics, whether inputs are regression scores)
CONFIGS = {
    "cola": (_matthews, False),
    "sst2": (_accuracy, False),
    "mrpc": (_accuracy_and_f1, False),
    "qqp": (_accuracy_and_f1, False),
    "stsb": (_pearson_and_spearman, True),
    "mnli": (_accuracy, False),
    "qnli": (_accuracy, False),
    "rte": (_accuracy, False),
    "wnli": (_accuracy, False),
    "user-binary": (_accuracy_and_f1, False),
    "user-multiclass": (_accuracy, False),
    "user-regression": (_pearson_and_spearman, True),
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS_DESCRIPTION)
class Glue(evaluate.Metric):
    """GLUE metric with one config per task (and three for users' data sets)."""

    def _info(self):
        if self.config_name not in CONFIGS:
            raise KeyError(f"unknown GLUE metric config {self.config_name!r}; known: {', '.join(CONFIGS)}")
        value_type = "float64" if CONFIGS[self.config_name][1] else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value(value_type), "references": datasets.Value(value_type)}
            ),
        )

    def _compute(self, predictions, references):
        # Inputs arrive as Python lists: the "numpy" format would turn float64 scores into float32.
        compute, _ = CONFIGS[self.config_name]
        return compute(np.asarray(predictions), np.asarray(references))
