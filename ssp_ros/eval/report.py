"""Pieces of the run reports shared by ``ssp demo`` and ``ssp replay``: the TC-over-time plot, table cells."""

from __future__ import annotations

from pathlib import Path


def cell(value: float | None) -> str:
    """A Markdown table cell for a metric: two decimals, an en dash when there is no value."""
    return "–" if value is None else f"{value:.2f}"


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
