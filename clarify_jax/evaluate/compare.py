"""Before / after: two or more HumanEvalComm evaluations of the same items side by side.

Used by the reports of `make demo` and `make reproduce-small`; every function takes `runs`: a
label ("untrained", "fine-tuned") -> the `summary.json` dict that `clarify-jax evaluate` wrote.
"""

from __future__ import annotations

from pathlib import Path

from clarify_jax.evaluate.humanevalcomm import CATEGORIES, ORIGINAL
from clarify_jax.evaluate.report import comm_markdown, percent
from clarify_jax.evaluate.runner import read_records

GROUPS = (ORIGINAL, *CATEGORIES, "overall")


def groups(summary: dict) -> dict[str, dict]:
    """Category (and "original", "overall") -> its metrics, for the groups that were run."""
    metrics = summary["metrics"]
    found = {ORIGINAL: metrics.get("original"), **metrics["categories"], "overall": metrics["overall"]}
    return {name: found[name] for name in GROUPS if found.get(name)}


def ask_gap(summary: dict) -> dict[str, float | None]:
    """The Communication Rate on the unmodified prompts, on the modified ones, and the gap: a model
    that knows when to ask has a low first, a high second."""
    found = groups(summary)
    clear = (found.get(ORIGINAL) or {}).get("communication_rate")
    unclear = found["overall"]["communication_rate"]
    return {
        "unmodified": clear,
        "modified": unclear,
        "gap": None if clear is None or unclear is None else unclear - clear,
    }


def comparison_markdown(runs: dict[str, dict]) -> str:
    """The leaderboard table with one row per run (and the published rows), the Communication
    Rate per category, and the asking gap between modified and unmodified prompts."""
    parts = [comm_markdown({label: s["metrics"] for label, s in runs.items()}), ""]
    names = [g for g in GROUPS if any(g in groups(s) for s in runs.values())]
    header = (
        "| Communication Rate | "
        + " | ".join(
            f"{g} ({max((groups(s).get(g) or {}).get('items', 0) for s in runs.values())})" for g in names
        )
        + " |"
    )
    parts += ["### Communication Rate per category (items)", "", header, "|" + "---|" * (len(names) + 1)]
    for label, summary in runs.items():
        found = groups(summary)
        parts.append(
            f"| {label} | "
            + " | ".join(percent((found.get(g) or {}).get("communication_rate")) for g in names)
            + " |"
        )
    parts += [
        "",
        "### Asking on modified vs unmodified prompts",
        "",
        "| Run | Unmodified | Modified | Gap (points) |",
        "|---|---|---|---|",
    ]
    for label, summary in runs.items():
        gap = ask_gap(summary)
        points = "—" if gap["gap"] is None else f"{100 * gap['gap']:+.2f}"
        parts.append(f"| {label} | {percent(gap['unmodified'])} | {percent(gap['modified'])} | {points} |")
    return "\n".join(parts) + "\n"


def communication_chart(runs: dict[str, dict], path: Path) -> Path:
    """Communication Rate and Good Question Rate per category, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt
    import numpy as np

    names = [g for g in GROUPS if any(g in groups(s) for s in runs.values())]
    x = np.arange(len(names))
    width = 0.8 / max(1, len(runs))
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for ax, key, title in zip(
        axes,
        ("communication_rate", "good_question_rate"),
        (
            "Communication Rate: round-1 replies with no code block",
            "Good Question Rate: questions graded 3 by the evaluator",
        ),
    ):
        for index, (label, summary) in enumerate(runs.items()):
            found = groups(summary)
            values = [100 * ((found.get(n) or {}).get(key) or 0) for n in names]
            ax.bar(x + (index - (len(runs) - 1) / 2) * width, values, width, label=label)
        ax.set_xticks(x, names)
        ax.set_ylabel("%")
        ax.set_ylim(0, 119)
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper center", ncol=len(runs), fontsize=8)
    figure.suptitle("HumanEvalComm per category (original = the unmodified prompt)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def example_replies(eval_dir: Path) -> list[dict]:
    """Records of one unmodified prompt, the first question graded 3 and the first graded 1 or 2."""
    rows = list(read_records(Path(eval_dir) / "results.jsonl").values())
    picks = [
        next((r for r in rows if test(r)), None)
        for test in (
            lambda r: r["category"] == ORIGINAL,
            lambda r: r["category"] != ORIGINAL and r["question_quality"] == 3,
            lambda r: r["category"] != ORIGINAL and r["question_quality"] in (1, 2),
        )
    ]
    return [r for r in picks if r is not None]
