"""The report's figures: matplotlib (Agg, no display) rendered to PNG and embedded as base64 data URIs.

Each function returns its figure; `render` turns it into the PNG and a record of what its axes show
(every line's points, the y range), which the page keeps beside the image so tests can check the
drawing against the metrics files."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plotted(fig) -> list[dict]:
    """Per axes: its labels, y range and every line's label, style and points (axhline: two points)."""
    def points(values) -> list:
        return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]

    return [{"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
             "ylim": [float(v) for v in ax.get_ylim()],
             "lines": [{"label": line.get_label(), "linestyle": line.get_linestyle(),
                        "x": points(line.get_xdata()), "y": points(line.get_ydata())} for line in ax.get_lines()]}
            for ax in fig.axes]


def render(fig) -> tuple[str, list[dict]]:
    """(PNG data URI, what the axes show); closes the figure."""
    data = plotted(fig)
    return png_data_uri(fig), data


def png_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def confusion_matrix(confusion: pd.DataFrame, labels: tuple[str, ...]):
    """Clip counts, actual against predicted, over the run's label set (`labels`, in model order)."""
    counts = pd.crosstab(confusion["actual"], confusion["predicted"]).reindex(
        index=labels, columns=labels, fill_value=0).to_numpy()
    fig, ax = plt.subplots(figsize=(5, 4.4))
    image = ax.imshow(counts, cmap="Blues")
    for (row, col), count in np.ndenumerate(counts):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > counts.max() / 2 else "black")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="actual")
    ax.set_xticklabels(labels, rotation=35, ha="right")
    ax.set_yticklabels(labels)
    fig.colorbar(image, ax=ax, shrink=0.8, label="clips").ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


ROBUSTNESS_PANELS = (("snr_db", "f1_weighted"), ("snr_db", "valence_mse"), ("blur", "f1_weighted"), ("blur", "valence_mse"))
AXIS_LABELS = {"snr_db": "SNR (dB), no blur", "blur": "blur factor r, clean audio", "f1_weighted": "weighted F1",
               "valence_mse": "valence MSE"}


def robust_limits(values, pad: float = 0.08) -> tuple[float, float]:
    """A y range holding every value but the far outliers (beyond 3 IQR of the quartiles), padded."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    q1, q3 = np.percentile(values, [25, 75])
    spread = max(q3 - q1, 1e-9)
    inside = values[(values >= q1 - 3 * spread) & (values <= q3 + 3 * spread)]
    low, high = inside.min(), inside.max()
    margin = max(high - low, 1e-3) * pad
    return float(low - margin), float(high + margin)


def robustness_curve(curve: pd.DataFrame):
    """F1 and valence MSE per modality subset against SNR (noise, no blur) and against blur (clean audio),
    four panels; dotted: each subset's clean view. The y axes fit the bulk of the values: a point beyond
    them is drawn as a triangle on the edge with its value."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), layout="constrained")
    colors = dict(zip(curve["subset"].unique(), plt.cm.tab10.colors))
    for ax, (x, y) in zip(axes.flat, ROBUSTNESS_PANELS):
        on_curve = curve[np.isfinite(curve[x])]   # the control view (+inf dB) is in the report's table, not on the axis
        clean = curve[curve["view"] == "clean"]
        low, high = robust_limits([*on_curve[y], *clean[y]])
        clipped: dict[tuple, int] = {}
        for subset, rows in on_curve.groupby("subset", sort=False):
            rows = rows.sort_values(x)
            ax.plot(rows[x], rows[y], marker="o", color=colors[subset], label=subset)
            for _, row in rows[(rows[y] > high) | (rows[y] < low)].iterrows():
                above = row[y] > high
                edge = high if above else low
                ax.plot([row[x]], [edge], marker="^" if above else "v", color=colors[subset],
                        markersize=8, clip_on=False, label="_outlier")
                stacked = clipped.setdefault((row[x], above), 0)  # labels of points clipped at one x stack up
                clipped[(row[x], above)] += 1
                ax.annotate(f"{subset} {row[y]:.1f}", (row[x], edge), textcoords="offset points", fontsize=7,
                            xytext=(6, (-10 - 9 * stacked) if above else (4 + 9 * stacked)), color=colors[subset])
        for subset, value in zip(clean["subset"], clean[y]):
            ax.axhline(value, color=colors[subset], linestyle=":", linewidth=1, label=f"_clean {subset}")
        ax.set_ylim(low, high)
        against = "SNR" if x == "snr_db" else "blur"
        ax.set(xlabel=AXIS_LABELS[x], ylabel=AXIS_LABELS[y], title=f"{AXIS_LABELS[y]} against {against}")
        if x == "blur":
            ax.set_xticks(sorted(on_curve[x].unique()))
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="subset (dotted: clean view)", loc="outside right center", fontsize=8)
    return fig


def threshold_curve(selected: pd.DataFrame, thresholds: dict[str, float | None]):
    """How many selected pseudo-labels survive a stricter global confidence cut, and how precise they are."""
    cuts = np.linspace(selected["confidence"].min(), selected["confidence"].max(), 50)
    known = selected[selected["true_label"].notna()]
    kept = [int((selected["confidence"] >= c).sum()) for c in cuts]
    precisions = [precision(known[known["confidence"] >= c]) for c in cuts]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.plot(cuts, kept, color="tab:blue")
    ax.set(xlabel="confidence cut", ylabel="items kept")
    ax.yaxis.label.set_color("tab:blue")
    twin = ax.twinx()
    twin.plot(cuts, precisions, color="tab:red")
    twin.set(ylabel="precision against true labels", ylim=(0, 1.05))
    twin.yaxis.label.set_color("tab:red")
    for value in (t for t in thresholds.values() if t is not None):
        ax.axvline(value, color="grey", linewidth=0.8, linestyle="--")
    ax.grid(alpha=0.3)
    return fig


def eta_study(study: pd.DataFrame):
    """Final-round test F1 (MER-SEMI and MER-MULTI) against eta and against the pseudo-labels selected."""
    final = study[study["final"].astype(bool)].sort_values("eta")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for x, ax in zip(("eta", "selected"), axes):
        for column, label in (("mer_semi_f1", "MER-SEMI F1"), ("mer_multi_f1", "MER-MULTI F1")):
            ax.plot(final[x], final[column], marker="o", label=label)
        ax.axhline(final["mer_semi_f1_start"].mean(), color="grey", linestyle=":", label="labelled only (SEMI)")
        ax.set(xlabel="eta" if x == "eta" else "pseudo-labels selected", ylabel="weighted F1")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def precision(rows: pd.DataFrame) -> float:
    """Share of pseudo-labels equal to the true label (NaN for no rows)."""
    return float((rows["label"] == rows["true_label"]).mean()) if len(rows) else np.nan


def valence_scatter(valence: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.scatter(valence["true_valence"], valence["predicted_valence"], s=14, alpha=0.7)
    low = min(valence.min().min(), -1.0)
    high = max(valence.max().max(), 1.0)
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="true valence", ylabel="predicted valence", aspect="equal")
    ax.grid(alpha=0.3)
    return fig


def training_curves(curves: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for fold, rows in curves.groupby("fold"):
        ax.plot(rows["epoch"], rows["val_combined"], linewidth=1, label=f"fold {fold}")
    ax.set(xlabel="epoch", ylabel="validation F1 - 0.25 MSE")
    ax.legend(fontsize=8, ncol=5)
    ax.grid(alpha=0.3)
    return fig
