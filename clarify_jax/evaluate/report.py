"""Markdown tables laid out like the HumanEvalComm leaderboard, and one PNG chart per category.

Every function takes `rows`: model name -> the metrics dict of `clarify_jax.evaluate.metrics`, so
several runs can be put side by side (rows = models, as in the published table).
"""

from __future__ import annotations

from pathlib import Path

from clarify_jax.evaluate.humanevalcomm import CATEGORIES, ORIGINAL
from clarify_jax.util.markdown import markdown_table

# The published HumanEvalComm table (Wu & Fard, README of the benchmark's repository), in percent:
# Pass@1 HmEval, Pass@1 HmEvalComm, Test Pass Rate HmEval, Test Pass Rate HmEvalComm, Comm. Rate,
# Good Question Rate.
PUBLISHED = {
    "ChatGPT": (65.58, 31.34, 76.42, 49.39, 14.21, 13.43),
    "CodeLlama": (29.88, 19.35, 45.71, 37.79, 10.16, 37.55),
    "CodeQwen1.5 Chat": (76.83, 47.61, 84.4, 62.89, 4.82, 41.68),
    "DeepSeek Coder": (71.78, 45.68, 79.44, 62.25, 30.76, 61.42),
    "DeepSeek Chat": (12.8, 26.32, 13.86, 44.52, 37.93, 58.71),
    "Okanagan (Base=ChatGPT)": (27.45, 39.62, 33.45, 56.98, 72.73, 52.24),
    "Okanagan (Base=DeepSeek Coder)": (21.25, 38.06, 24.3, 52.72, 82.51, 60.13),
}
# The published table's columns, in its order (the values of PUBLISHED follow it).
LEADERBOARD_LABELS = (
    "Pass@1 (HmEval)",
    "Pass@1 (HmEvalComm)",
    "Test Pass Rate (HmEval)",
    "Test Pass Rate (HmEvalComm)",
    "Comm. Rate",
    "Good Question Rate",
)
COMM_COLUMNS = (
    ("communication_rate", "Comm. Rate"),
    ("good_question_rate", "Good Question Rate"),
    ("pass@1", "Pass@1"),
    ("test_pass_rate", "Test Pass Rate"),
)


TITLES = {"overall": "All modified prompts", ORIGINAL: "Original prompts"}


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _groups(metrics: dict) -> dict[str, dict | None]:
    groups = {"overall": metrics["overall"], **metrics["categories"]}
    groups[ORIGINAL] = metrics.get("original")
    return groups


def comm_markdown(rows: dict[str, dict], published: bool = True) -> str:
    """The leaderboard table (HmEval = the unmodified prompts, HmEvalComm = all modified ones),
    then one table per category with Comm. Rate, Good Question Rate, Pass@1, Test Pass Rate."""
    header = ["Model", *LEADERBOARD_LABELS]
    body = []
    for name, metrics in rows.items():
        original, overall = metrics.get("original") or {}, metrics["overall"]
        body.append(
            [
                name,
                percent(original.get("pass@1")),
                percent(overall["pass@1"]),
                percent(original.get("test_pass_rate")),
                percent(overall["test_pass_rate"]),
                percent(overall["communication_rate"]),
                percent(overall["good_question_rate"]),
            ]
        )
    if published:
        body += [
            [f"{name} (published)", *(f"{v:.2f}%" for v in values)] for name, values in PUBLISHED.items()
        ]
    parts = ["## HumanEvalComm", "", markdown_table(header, body), ""]
    for group in ("overall", *CATEGORIES, ORIGINAL):
        present = {name: _groups(m).get(group) for name, m in rows.items() if _groups(m).get(group)}
        if not present:
            continue
        items = "/".join(str(m["items"]) for m in present.values())
        title = TITLES.get(group, f"Category {group}")
        body = [[name, *(percent(m[key]) for key, _ in COMM_COLUMNS)] for name, m in present.items()]
        parts += [
            f"### {title} ({items} items)",
            "",
            markdown_table(["Model", *(label for _, label in COMM_COLUMNS)], body),
            "",
        ]
    return "\n".join(parts)


def pass_at_k_markdown(rows: dict[str, dict], benchmark: str) -> str:
    ks = sorted({int(key[5:]) for m in rows.values() for key in m if key.startswith("pass@")})
    header = ["Model", "Problems", "Samples", *(f"pass@{k}" for k in ks), "Test Pass Rate"]
    body = [
        [
            name,
            str(m["problems"]),
            str(m["samples"]),
            *(percent(m.get(f"pass@{k}")) for k in ks),
            percent(m["test_pass_rate"]),
        ]
        for name, m in rows.items()
    ]
    return "\n".join([f"## {benchmark}", "", markdown_table(header, body), ""])


def _bar_chart(path: Path, title: str, labels: list[str], series: dict[str, list[float | None]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        positions = [x + (index - (len(series) - 1) / 2) * width for x in range(len(labels))]
        heights = [100 * v if v is not None else 0.0 for v in values]
        bars = axes.bar(positions, heights, width, label=name)
        axes.bar_label(
            bars, labels=[f"{h:.1f}" if v is not None else "n/a" for h, v in zip(heights, values)], fontsize=7
        )
    axes.set_xticks(range(len(labels)), labels)
    axes.set_ylim(0, 110)
    axes.set_ylabel("%")
    axes.set_title(title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def comm_charts(rows: dict[str, dict], out_dir: Path) -> list[Path]:
    """chart_overall.png, chart_<category>.png and chart_original.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for group in ("overall", *CATEGORIES, ORIGINAL):
        present = {name: _groups(m).get(group) for name, m in rows.items() if _groups(m).get(group)}
        if present:
            series = {name: [m[key] for key, _ in COMM_COLUMNS] for name, m in present.items()}
            written.append(
                _bar_chart(
                    out_dir / f"chart_{group}.png",
                    f"HumanEvalComm: {group}",
                    [label for _, label in COMM_COLUMNS],
                    series,
                )
            )
    return written


def pass_at_k_chart(rows: dict[str, dict], out_dir: Path, benchmark: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    ks = sorted({int(key[5:]) for m in rows.values() for key in m if key.startswith("pass@")})
    series = {name: [m.get(f"pass@{k}") for k in ks] for name, m in rows.items()}
    return _bar_chart(out_dir / f"chart_{benchmark}.png", benchmark, [f"pass@{k}" for k in ks], series)
