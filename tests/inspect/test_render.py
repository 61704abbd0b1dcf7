"""The heatmap and the HTML snippet: long inputs wrap, newlines break lines, tokens are escaped."""

from matplotlib.image import imread

from peftlab.inspect.render import attribution_html, heatmap_png, layout, scale


def result(tokens, scores):
    return {
        "tokens": tokens,
        "scores": scores,
        "output": "<b>out</b>",
        "f_input": -1.0,
        "f_baseline": -3.0,
        "attribution_sum": 2.0,
        "completeness_gap": 0.0,
        "completeness_gap_relative": 0.0,
        "steps": 8,
        "rule": "gauss-legendre",
        "baseline": "pad",
        "virtual_tokens": 0,
        "run": "r",
        "split": "test",
        "index": 0,
    }


def test_layout_wraps_at_the_width_and_after_newlines():
    placed = layout(["abc", "de\n", "fghij", "klmno"], columns=8)
    assert placed == [(0, 0, "abc"), (0, 3, "de↵"), (1, 0, "fghij"), (2, 0, "klmno")]
    assert layout(["x" * 20], columns=8) == [(0, 0, "xxxxxxx…")]


def test_colour_scale_is_symmetric_and_ignores_a_lone_outlier():
    norm, _ = scale([0.1, -0.2, 0.3] * 40 + [50.0])
    assert norm.vmin == -norm.vmax and 0.2 < norm.vmax < 1.0


def test_html_escapes_tokens_and_output():
    html = attribution_html(result(["<script>", "&", "a\n"], [1.0, -1.0, 0.0]))
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp;" in html and "&lt;b&gt;out" in html
    assert html.count("<span title=") == 3 and "a↵</span>\n" in html


def test_heatmap_grows_with_the_number_of_lines(tmp_path):
    short = heatmap_png(result(["word "] * 10, [0.5] * 10), tmp_path / "short.png")
    long = heatmap_png(result(["word "] * 400, [0.5, -0.5] * 200), tmp_path / "long.png")
    assert imread(long).shape[0] > imread(short).shape[0] + 200
    assert imread(long).shape[1] == imread(short).shape[1]
