"""Tests of trimbert.metrics: the local GLUE evaluate module against scikit-learn and SciPy."""

from __future__ import annotations

import math

import evaluate
import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from trimbert.data.metrics import GLUE_METRIC_PATH, compute_metrics, load_metric
from trimbert.data.tasks import GLUE_TASKS, TaskInfo, get_task

# Hand-picked inputs: 10 binary, 9 three-class and 8 regression pairs.
BINARY_PREDICTIONS = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
BINARY_REFERENCES = [1, 0, 0, 1, 0, 1, 1, 0, 0, 1]
MULTICLASS_PREDICTIONS = [0, 1, 2, 2, 1, 0, 0, 2, 1]
MULTICLASS_REFERENCES = [0, 1, 2, 1, 1, 0, 2, 2, 0]
REGRESSION_PREDICTIONS = [0.1, 4.2, 3.3, 2.0, 4.9, 1.1, 2.5, 3.0]
REGRESSION_REFERENCES = [0.0, 4.0, 3.8, 1.6, 5.0, 1.25, 3.0, 2.4]


def sklearn_binary() -> dict[str, float]:
    return {
        "accuracy": accuracy_score(BINARY_REFERENCES, BINARY_PREDICTIONS),
        "f1": f1_score(BINARY_REFERENCES, BINARY_PREDICTIONS),
    }


def scipy_regression() -> dict[str, float]:
    return {
        "pearson": pearsonr(REGRESSION_PREDICTIONS, REGRESSION_REFERENCES)[0],
        "spearmanr": spearmanr(REGRESSION_PREDICTIONS, REGRESSION_REFERENCES)[0],
    }


# config name -> (predictions, references, expected metrics from scikit-learn / SciPy)
CASES = {
    "cola": (
        BINARY_PREDICTIONS,
        BINARY_REFERENCES,
        lambda: {"matthews_correlation": matthews_corrcoef(BINARY_REFERENCES, BINARY_PREDICTIONS)},
    ),
    "sst2": (
        BINARY_PREDICTIONS,
        BINARY_REFERENCES,
        lambda: {"accuracy": accuracy_score(BINARY_REFERENCES, BINARY_PREDICTIONS)},
    ),
    "mrpc": (BINARY_PREDICTIONS, BINARY_REFERENCES, sklearn_binary),
    "qqp": (BINARY_PREDICTIONS, BINARY_REFERENCES, sklearn_binary),
    "stsb": (REGRESSION_PREDICTIONS, REGRESSION_REFERENCES, scipy_regression),
    "mnli": (
        MULTICLASS_PREDICTIONS,
        MULTICLASS_REFERENCES,
        lambda: {"accuracy": accuracy_score(MULTICLASS_REFERENCES, MULTICLASS_PREDICTIONS)},
    ),
    "qnli": (
        BINARY_PREDICTIONS,
        BINARY_REFERENCES,
        lambda: {"accuracy": accuracy_score(BINARY_REFERENCES, BINARY_PREDICTIONS)},
    ),
    "rte": (
        BINARY_PREDICTIONS,
        BINARY_REFERENCES,
        lambda: {"accuracy": accuracy_score(BINARY_REFERENCES, BINARY_PREDICTIONS)},
    ),
    "wnli": (
        BINARY_PREDICTIONS,
        BINARY_REFERENCES,
        lambda: {"accuracy": accuracy_score(BINARY_REFERENCES, BINARY_PREDICTIONS)},
    ),
    "user-binary": (BINARY_PREDICTIONS, BINARY_REFERENCES, sklearn_binary),
    "user-multiclass": (
        MULTICLASS_PREDICTIONS,
        MULTICLASS_REFERENCES,
        lambda: {"accuracy": accuracy_score(MULTICLASS_REFERENCES, MULTICLASS_PREDICTIONS)},
    ),
    "user-regression": (REGRESSION_PREDICTIONS, REGRESSION_REFERENCES, scipy_regression),
}

USER_TASKS = {
    "user-binary": TaskInfo(
        name="reviews",
        text_a="text",
        text_b=None,
        label_names=("neg", "pos"),
        is_regression=False,
        metric_names=("accuracy", "f1"),
        main_metric="accuracy",
        metric_config="user-binary",
    ),
    "user-multiclass": TaskInfo(
        name="topics",
        text_a="text",
        text_b=None,
        label_names=("a", "b", "c"),
        is_regression=False,
        metric_names=("accuracy",),
        main_metric="accuracy",
        metric_config="user-multiclass",
    ),
    "user-regression": TaskInfo(
        name="scores",
        text_a="text",
        text_b=None,
        label_names=(),
        is_regression=True,
        metric_names=("pearson", "spearmanr"),
        main_metric="spearmanr",
        metric_config="user-regression",
    ),
}


def assert_same_metrics(result: dict, expected: dict) -> None:
    assert list(result) == list(expected)
    for name, value in result.items():
        assert type(value) is float, name
        assert value == pytest.approx(float(expected[name]), rel=1e-12, abs=1e-12), name


def test_every_config_has_a_case():
    assert set(CASES) == set(GLUE_TASKS) | set(USER_TASKS)


@pytest.mark.parametrize("config", list(CASES))
def test_local_evaluate_module_matches_sklearn_and_scipy(config):
    predictions, references, expected = CASES[config]
    metric = evaluate.load(str(GLUE_METRIC_PATH), config)
    assert_same_metrics(metric.compute(predictions=predictions, references=references), expected())


@pytest.mark.parametrize("config", list(CASES))
def test_compute_metrics_matches_sklearn_and_scipy(config):
    predictions, references, expected = CASES[config]
    task = USER_TASKS.get(config) or get_task(config)
    result = compute_metrics(task, np.asarray(predictions), np.asarray(references))
    assert_same_metrics(result, expected())
    assert tuple(result) == task.metric_names


@pytest.mark.parametrize("spelling", ["SST-2", "sts-b", "MNLI", "CoLA"])
def test_compute_metrics_accepts_task_names(spelling):
    task = get_task(spelling)
    predictions, references, expected = CASES[task.name]
    assert_same_metrics(compute_metrics(spelling, predictions, references), expected())


def test_hand_computed_values():
    # 7 of 10 right; tp=4, fp=2, fn=1 -> f1 = 8/11; mcc = (4*3 - 2*1) / sqrt(6*5*5*4)
    assert compute_metrics("mrpc", BINARY_PREDICTIONS, BINARY_REFERENCES) == pytest.approx(
        {"accuracy": 0.7, "f1": 8 / 11}
    )
    assert compute_metrics("cola", BINARY_PREDICTIONS, BINARY_REFERENCES) == pytest.approx(
        {"matthews_correlation": 10 / math.sqrt(600)}
    )
    assert compute_metrics("stsb", [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(
        {"pearson": 1.0, "spearmanr": 1.0}
    )


def test_regression_scores_keep_float64_precision():
    predictions = np.array([0.1, 0.2000001, 0.3, 0.5])
    references = np.array([0.1, 0.2, 0.35, 0.4])
    result = compute_metrics("stsb", predictions, references)
    assert result["pearson"] == float(pearsonr(predictions, references)[0])


def test_load_metric_for_task_info_and_name():
    assert load_metric(get_task("qqp")).config_name == "qqp"
    assert load_metric("STS-B").config_name == "stsb"
    assert load_metric(USER_TASKS["user-binary"]).config_name == "user-binary"


def test_unknown_config_is_rejected():
    with pytest.raises(KeyError, match="unknown GLUE metric config 'squad'"):
        evaluate.load(str(GLUE_METRIC_PATH), "squad")
