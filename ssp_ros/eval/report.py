"""Pieces of the run reports shared by ``ssp demo`` and ``ssp replay``: the TC-over-time plot, table cells, the
class-share table."""

from __future__ import annotations

from pathlib import Path


def cell(value: float | None) -> str:
    """A Markdown table cell for a metric: two decimals, an en dash when there is no value."""
    return "–" if value is None else f"{value:.2f}"


def class_share_table(classes: list[str], shares: dict[str, list[float] | None]) -> list[str]:
    """Markdown lines: one row per class, one column per model (label → percent per class; None: no pixel seen)."""
    columns = {label: values or [None] * len(classes) for label, values in shares.items()}
    rows = [f"| {name} | " + " | ".join(cell(values[i]) for values in columns.values()) + " |"
            for i, name in enumerate(classes)]
    return ["| class | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|", *rows]


def plot_tc_over_time(path: Path, curves: dict[str, list[float]]) -> None:
    """Plot TC per frame pair (percent) for each labelled curve into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    for label, values in curves.items():
        ax.plot(values, label=label, linewidth=1.2)
    ax.set_xlabel("frame pair")
    ax.set_ylabel("TC per pair (%)")
    ax.set_title("Temporal consistency over time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
