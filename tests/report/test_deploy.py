"""The report's "what to deploy" section: variant × runtime, against U*, fastest first."""

from trimbert.report.aggregate import ReportRow, ReportTable
from trimbert.report.deploy import deploy_markdown, deploy_rows
from trimbert.report.render import render_markdown, write_report


def _row(variant, accuracy, latency, speedup=None, low=None, high=None, star="base@ov-int8", **extra):
    return ReportRow(
        variant=variant, main_metric="accuracy", metrics={"accuracy": accuracy}, latency_ms=latency,
        speedup=speedup, speedup_low=low, speedup_high=high, speedup_stable=True if speedup else None,
        paired_baseline=star if speedup else None, batch_size=8, seq_len=64, **extra,
    )


def _table(rows):
    return ReportTable(rows=rows, baseline="base", task="sst2", main_metric="accuracy", metric_names=["accuracy"],
                       pareto_cost=None)


ROWS = [
    _row("base", 0.8500, 40.0, 0.30, 0.29, 0.31, is_baseline=True),
    _row("base@ov-int8", 0.8450, 12.0),  # U*: the reference itself
    _row("trim", 0.8400, 30.0, 0.40, 0.38, 0.41),
    _row("trim@ov-int8", 0.8300, 8.0, 1.50, 1.45, 1.55),
    _row("trim@ort-int8", 0.8470, 11.0, 1.09, 1.05, 1.12),
]


def test_rows_are_every_variant_in_every_runtime_fastest_first_against_u_star():
    rows = deploy_rows(_table(ROWS))
    assert [(row.variant, row.runtime) for row in rows] == [
        ("trim", "OpenVINO int8"), ("trim", "ONNX Runtime int8"), ("base", "OpenVINO int8"),
        ("trim", "PyTorch"), ("base", "PyTorch"),
    ]
    assert [row.is_u_star for row in rows] == [False, False, True, False, False]
    assert [round(row.delta_points, 2) for row in rows] == [-2.0, -0.3, -0.5, -1.0, 0.0]


def test_markdown_marks_u_star_and_the_rows_within_one_point():
    lines = deploy_markdown(_table(ROWS))
    assert lines[0] == "## What to deploy"
    body = lines[6:]
    assert body == [
        "| trim | OpenVINO int8 | 0.8300 | -2.00 | 8.00 | 1.50× | 1.45–1.55 |  |",
        "| trim | ONNX Runtime int8 | 0.8470 | -0.30 | 11.00 | 1.09× | 1.05–1.12 | ✓ |",
        "| base (U*) | OpenVINO int8 | 0.8450 | -0.50 | 12.00 | 1.00× (reference) | - | ✓ |",
        "| trim | PyTorch | 0.8400 | -1.00 | 30.00 | 0.40× | 0.38–0.41 | ✓ |",
        "| base | PyTorch | 0.8500 | +0.00 | 40.00 | 0.30× | 0.29–0.31 | ✓ |",
    ]


def test_a_report_without_exported_runtimes_has_no_section(tmp_path):
    plain = _table([_row("base", 0.85, 40.0, is_baseline=True), _row("trim", 0.84, 30.0, 1.3, 1.2, 1.4, star="base")])
    assert deploy_rows(plain) == [] and "What to deploy" not in render_markdown(plain)
    assert "deploy" not in write_report(plain, tmp_path / "plain")
    written = write_report(_table(ROWS), tmp_path / "deploy")
    assert written["deploy"].name == "deploy_metric_vs_latency.png" and written["deploy"].stat().st_size > 1000
    markdown = written["markdown"].read_text()
    assert "## What to deploy" in markdown and "![what to deploy](deploy_metric_vs_latency.png)" in markdown
