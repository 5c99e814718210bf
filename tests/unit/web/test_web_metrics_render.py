"""The Prometheus text exposition: names, types, escaping, histograms."""

from __future__ import annotations

from trunkline.web.metrics import Family, Sample, histogram_samples, render


def test_render_families_with_escaped_labels() -> None:
    text = render(
        [
            Family(
                "trunkline_x_total",
                "counter",
                "Things.",
                (
                    Sample((("repo", 'a"b\\c\nd'),), 3.0),
                    Sample((), 0.5),
                ),
            )
        ]
    )
    assert text == (
        "# HELP trunkline_x_total Things.\n"
        "# TYPE trunkline_x_total counter\n"
        'trunkline_x_total{repo="a\\"b\\\\c\\nd"} 3\n'
        "trunkline_x_total 0.5\n"
    )


def test_histogram_samples_are_cumulative_with_inf_count_and_sum() -> None:
    samples = histogram_samples((("kind", "k"),), (1.0, 5.0), [2, 3], 4, 12.5)
    lines = render([Family("h_seconds", "histogram", "H.", tuple(samples))]).splitlines()
    assert lines[2:] == [
        'h_seconds_bucket{kind="k",le="1"} 2',
        'h_seconds_bucket{kind="k",le="5"} 3',
        'h_seconds_bucket{kind="k",le="+Inf"} 4',
        'h_seconds_count{kind="k"} 4',
        'h_seconds_sum{kind="k"} 12.5',
    ]
