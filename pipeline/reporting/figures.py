"""The report's figures: matplotlib (Agg, no display) rendered to PNG and embedded as base64 data URIs."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.labels import MER_LABELS  # noqa: E402


def png_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def confusion_matrix(confusion: pd.DataFrame) -> str:
    counts = pd.crosstab(confusion["actual"], confusion["predicted"]).reindex(
        index=MER_LABELS, columns=MER_LABELS, fill_value=0).to_numpy()
    fig, ax = plt.subplots(figsize=(5, 4.4))
    image = ax.imshow(counts, cmap="Blues")
    for (row, col), count in np.ndenumerate(counts):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > counts.max() / 2 else "black")
    ax.set(xticks=range(len(MER_LABELS)), yticks=range(len(MER_LABELS)), xlabel="predicted", ylabel="actual")
    ax.set_xticklabels(MER_LABELS, rotation=35, ha="right")
    ax.set_yticklabels(MER_LABELS)
    fig.colorbar(image, ax=ax, shrink=0.8, label="clips").ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return png_data_uri(fig)


def robustness_curve(curve: pd.DataFrame) -> str:
    """F1 and valence MSE against SNR per modality subset; the clean view as a dotted line."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for (subset, rows), color in zip(curve.groupby("subset", sort=False), plt.cm.tab10.colors):
        noisy, clean = rows[rows["snr_db"].notna()], rows[rows["snr_db"].isna()]
        for ax, column in zip(axes, ("f1_weighted", "valence_mse")):
            ax.plot(noisy["snr_db"], noisy[column], marker="o", color=color, label=subset)
            for value in clean[column]:
                ax.axhline(value, color=color, linestyle=":", linewidth=1)
    for ax, label in zip(axes, ("weighted F1", "valence MSE")):
        ax.set(xlabel="SNR (dB)", ylabel=label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="subset (dotted: clean view)", loc="outside right center", fontsize=8)
    return png_data_uri(fig)


def threshold_curve(selected: pd.DataFrame, thresholds: dict[str, float | None]) -> str:
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
    return png_data_uri(fig)


def eta_study(study: pd.DataFrame) -> str:
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
    return png_data_uri(fig)


def precision(rows: pd.DataFrame) -> float:
    """Share of pseudo-labels equal to the true label (NaN for no rows)."""
    return float((rows["label"] == rows["true_label"]).mean()) if len(rows) else np.nan


def valence_scatter(valence: pd.DataFrame) -> str:
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.scatter(valence["true_valence"], valence["predicted_valence"], s=14, alpha=0.7)
    low = min(valence.min().min(), -1.0)
    high = max(valence.max().max(), 1.0)
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="true valence", ylabel="predicted valence", aspect="equal")
    ax.grid(alpha=0.3)
    return png_data_uri(fig)


def training_curves(curves: pd.DataFrame) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for fold, rows in curves.groupby("fold"):
        ax.plot(rows["epoch"], rows["val_combined"], linewidth=1, label=f"fold {fold}")
    ax.set(xlabel="epoch", ylabel="validation F1 - 0.25 MSE")
    ax.legend(fontsize=8, ncol=5)
    ax.grid(alpha=0.3)
    return png_data_uri(fig)
