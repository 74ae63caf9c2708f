"""Where training metrics go: a JSONL file, TensorBoard event files and, at the end, PNG plots.

Only process 0 writes. On resume, JSONL records after the restored step are dropped (they came
from steps that are now run again) and TensorBoard purges them likewise, so no step is counted
twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    def __init__(self, run_dir: str | Path, resume_step: int | None = None, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.enabled = enabled
        self._writer = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            _drop_records_after(self.path, resume_step)
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(
            str(self.run_dir / "tensorboard"), purge_step=None if resume_step is None else resume_step + 1
        )

    def write(self, split: str, step: int, metrics: dict[str, Any]) -> None:
        """One record: {"split": "train" | "validation", "step": N, ...metrics}."""
        if not self.enabled:
            return
        record = {"split": split, "step": step, **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for name, value in record.items():
            if isinstance(value, (int, float)) and name != "step":
                self._writer.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_records(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a crash ends the file
    return records


def _drop_records_after(path: Path, step: int) -> None:
    kept = [r for r in read_records(path) if r["step"] <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


def _plain(value):
    try:
        return float(value) if not isinstance(value, (int, str)) else value
    except (TypeError, ValueError):
        return value


def plot_losses(metrics_path: str | Path, out_path: str | Path) -> Path:
    """A PNG of the loss per kind (clarify, code) and the total over steps, training and validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_records(metrics_path)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharex=True)
    for ax, key, title in zip(
        axes, ("loss", "loss/clarify", "loss/code"), ("total (weighted)", "clarifying questions", "code")
    ):
        for split, style in (("train", "-"), ("validation", "o--")):
            points = [(r["step"], r[key]) for r in records if r["split"] == split and key in r]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, style, label=split)
        ax.set_title(f"loss: {title}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
