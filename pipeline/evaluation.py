"""Score predictions the way MER 2023 does and lay out the tables and plot data `evaluate` writes.

MER-MULTI (test1) and MER-NOISE (test2, corrupted view) are scored by F1_w - 0.25 * MSE; MER-SEMI
(test3) by weighted F1 over its labelled items only. With several seeds, figures are mean and std.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from pipeline.config import ConfigError
from pipeline.labels import label_index, logit_columns, predicted_labels
from pipeline.training.calibration import apply_temperature, calibrate
from pipeline.training.metrics import ece, over_seeds, score_split

PAPER_BASELINE = {  # MER 2023 paper, best attention-fusion figures (abstract)
    "mer_multi": {"f1_weighted": 0.7757, "valence_mse": 0.82},
    "mer_noise": {"f1_weighted": 0.6982, "valence_mse": 1.12},
    "mer_semi": {"f1_weighted": 0.8675},
}


NOISE_SPLIT, CLEAN_VIEW = "test2", "clean"  # clean: test2 as the corpus has it (MER 2023 releases it corrupted)


# The figures `dvc metrics show`, `dvc exp show`, `mer exps` and `mer diff-report` lead with, in order:
# metrics/headline.json key -> (label, whether higher is better). A task's bare key is its challenge score
# (F1 - 0.25 MSE; MER-SEMI: F1), <task>F1 / <task>MSE its parts; "cv" is the main subset's cross-validated
# score. Every other metrics file is a plain output, and the keys are short and the values rounded to
# 3 decimals, so `dvc exp show --only-changed` of a sweep fits a 160-column terminal.
HEADLINE = {
    "multi": ("MER-MULTI F1-0.25MSE", True), "multiF1": ("MER-MULTI F1", True), "multiMSE": ("MER-MULTI MSE", False),
    "noise": ("MER-NOISE F1-0.25MSE", True), "noiseF1": ("MER-NOISE F1", True), "noiseMSE": ("MER-NOISE MSE", False),
    "semi": ("MER-SEMI F1", True),
    "cv": ("CV F1-0.25MSE", True),
}
# The headline of each evaluate.protocol (pipeline/protocols.py); mer2023's is HEADLINE.
HEADLINES = {
    "mer2023": HEADLINE,
    "semi": {"semi": ("MER-SEMI F1", True), "semiAcc": ("MER-SEMI accuracy", True), "cvF1": ("CV F1", True)},
    "fg": {"fg": ("MER-FG EW F (levels 1, 2)", True), "fgL1": ("MER-FG EW F level 1", True),
           "fgL2": ("MER-FG EW F level 2", True), "cvF1": ("CV F1", True)},
}
EVERY_HEADLINE = {key: value for figures in HEADLINES.values() for key, value in figures.items()}


def headline_keys(present) -> list[str]:
    """The headline keys of the protocols that scored `present` (keys found in headline files): those with a
    key of their own among them, in HEADLINES order; MER 2023's when none has."""
    present = set(present)
    own = lambda key: sum(key in figures for figures in HEADLINES.values()) == 1  # noqa: E731
    scored = [name for name, figures in HEADLINES.items() if any(own(k) and k in present for k in figures)]
    return list(dict.fromkeys(key for name in scored or ["mer2023"] for key in HEADLINES[name]))
_HEADLINE_SOURCES = {"": "combined", "F1": "f1_weighted", "MSE": "valence_mse"}


def headline(figures: dict[str, dict], cv_main: dict) -> dict:
    """metrics/headline.json: the HEADLINE figures of the challenge scores (`figures`, keyed mer_multi,
    mer_noise, mer_semi) and of the main subset's cross-validation (`cv_main`), to 3 decimals (the full
    values stay in mer_*.json and cv.json); None where not scored."""
    out = {}
    for key in HEADLINE:
        task, figure = re.fullmatch(r"([a-z]+)(F1|MSE|)", key).groups()
        source = cv_main if task == "cv" else figures.get(f"mer_{task}", {})
        value = source.get("f1_weighted" if task == "semi" else _HEADLINE_SOURCES[figure])
        out[key] = None if value is None else round(float(value), 3)
    return out


def joined(predictions: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    truth = manifest[["sample_id", "label", "valence", "true_label"]].rename(columns={"valence": "valence_true"})
    return predictions.merge(truth, on="sample_id", how="left")


def score_rows(rows: pd.DataFrame, with_valence: bool = True) -> dict:
    """Scores of one (subset, seed, test) block of joined predictions; only labelled rows count, and
    `n_fallback` of them were predicted from the training prior (none of the subset's modalities)."""
    labelled = rows[rows["label"].notna()]
    if labelled.empty:
        return {"n": 0, "n_fallback": 0}
    labels = predicted_labels(rows)
    y = label_index(labelled["label"], labels)
    pred = labelled[logit_columns(labels)].to_numpy().argmax(1)
    v_true = labelled["valence_true"].to_numpy(float) if with_valence else None
    if v_true is not None and np.isnan(v_true).all():
        v_true = None
    figures = score_split(y, pred, v_true, labelled["valence"].to_numpy(float) if v_true is not None else None)
    return {"n": figures.pop("n"), "n_fallback": int(labelled["fallback"].sum())} | figures


def score(joined_rows: pd.DataFrame, subset: str, test: str, with_valence: bool = True) -> dict:
    block = joined_rows[(joined_rows["subset"] == subset) & (joined_rows["test"] == test)]
    if block.empty:
        return {"n": 0}
    return over_seeds([score_rows(g, with_valence) for _, g in block.groupby("seed")])


def challenge_metrics(rows: pd.DataFrame, subset: str, noise_test: str) -> dict[str, dict]:
    return {
        "mer_multi": score(rows, subset, "test1"),
        "mer_noise": score(rows, subset, noise_test),
        "mer_semi": score(rows, subset, "test3", with_valence=False),
    }


def noise_test_name(view: str, tests) -> str:
    """The predictions' test MER-NOISE is scored on for evaluate.noise_view `view`: 'test2' for the clean
    view, 'test2@<view>' for a corrupted one. A view the predictions lack is a config error (a corpus
    without test2 has nothing to score, whatever the view)."""
    names = set(tests)
    views = [CLEAN_VIEW, *sorted(t.removeprefix(f"{NOISE_SPLIT}@") for t in names if t.startswith(f"{NOISE_SPLIT}@"))]
    if view not in views and NOISE_SPLIT in names:
        raise ConfigError(f"evaluate.noise_view: {NOISE_SPLIT} has no view {view!r}; the views that exist: "
                          f"{', '.join(views)} (corrupted views come from the corrupt stage's corrupt.splits)")
    return NOISE_SPLIT if view == CLEAN_VIEW else f"{NOISE_SPLIT}@{view}"


ABLATION_COUNTS = ("cv_n", "multi_n", "noise_n", "semi_n",  # whole numbers, absent where a split has no items
                   "multi_fallback", "noise_fallback", "semi_fallback")


def ablation_table(rows: pd.DataFrame, cv_runs: list[dict], noise_test: str) -> pd.DataFrame:
    records = []
    for subset in dict.fromkeys(r["subset"] for r in cv_runs):
        runs = [r for r in cv_runs if r["subset"] == subset]
        figures = challenge_metrics(rows, subset, noise_test)
        records.append({  # *_n: labelled items each figure scores; *_fallback: how many of them the subset's
                          # modalities miss (predicted from the training prior)
            "subset": subset, "cv_n": runs[0].get("items"),
            "cv_f1": np.mean([r["f1_weighted"] for r in runs]),
            "cv_mse": np.mean([r.get("valence_mse", np.nan) for r in runs]),
            "multi_f1": figures["mer_multi"].get("f1_weighted"), "multi_mse": figures["mer_multi"].get("valence_mse"),
            "multi_combined": figures["mer_multi"].get("combined"),
            "noise_f1": figures["mer_noise"].get("f1_weighted"), "noise_mse": figures["mer_noise"].get("valence_mse"),
            "noise_combined": figures["mer_noise"].get("combined"),
            "semi_f1": figures["mer_semi"].get("f1_weighted"),
            "multi_n": figures["mer_multi"].get("n"), "noise_n": figures["mer_noise"].get("n"),
            "semi_n": figures["mer_semi"].get("n"),
            **{f"{key}_fallback": figures[f"mer_{key}"].get("n_fallback") for key in ("multi", "noise", "semi")},
        })
    return pd.DataFrame(records).astype({c: "Int64" for c in ABLATION_COUNTS})


def robustness_curve(rows: pd.DataFrame, split: str = NOISE_SPLIT) -> pd.DataFrame:
    """F1 and valence MSE per subset on every view of `split`: clean, fixed SNR (`@snr<S>`, no blur)
    and fixed blur (`@blur<r>`, clean audio). Each row has an x position on at most one curve: snr_db
    for the SNR views, blur for the clean (1) and blur views; the other is empty."""
    records = []
    for test in rows["test"].unique():
        view = "clean" if test == split else test.removeprefix(f"{split}@")
        if not test.startswith(split) or not (view == "clean" or view.startswith(("snr", "blur"))):
            continue  # other splits, and the MER-NOISE view itself (random SNR and blur per clip)
        snr = float(view[3:]) if view.startswith("snr") else np.nan
        blur = np.nan if view.startswith("snr") else int(view[4:]) if view.startswith("blur") else 1
        for subset in rows["subset"].unique():
            figures = score(rows, subset, test)
            records.append({"subset": subset, "view": view, "snr_db": snr, "blur": blur,
                            "snr": view.removeprefix("snr") if view.startswith("snr") else view,
                            "f1_weighted": figures.get("f1_weighted"), "valence_mse": figures.get("valence_mse"),
                            "n": figures.get("n")})
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    return frame.sort_values(["subset", "snr_db", "blur"], na_position="last").reset_index(drop=True)


def first_seed(rows: pd.DataFrame, subset: str, test: str) -> pd.DataFrame:
    block = rows[(rows["subset"] == subset) & (rows["test"] == test)]
    return block[block["seed"] == block["seed"].min()]


def confusion_rows(rows: pd.DataFrame, subset: str, test: str) -> pd.DataFrame:
    block = first_seed(rows, subset, test)
    block = block[block["label"].notna()]
    labels = predicted_labels(rows)
    predicted = np.array(labels)[block[logit_columns(labels)].to_numpy().argmax(1)]
    return pd.DataFrame({"actual": block["label"].to_numpy(), "predicted": predicted})


def per_class_f1(confusion: pd.DataFrame, labels: tuple[str, ...]) -> pd.DataFrame:
    if confusion.empty:  # no labelled test1 item: a corpus with a training split only
        scores = np.full(len(labels), np.nan)
    else:
        scores = f1_score(confusion["actual"], confusion["predicted"], labels=list(labels), average=None, zero_division=0)
    support = confusion["actual"].value_counts()
    return pd.DataFrame({"label": labels, "f1": scores, "support": [int(support.get(c, 0)) for c in labels]})


def valence_rows(rows: pd.DataFrame, subset: str, test: str) -> pd.DataFrame:
    block = first_seed(rows, subset, test)
    block = block[block["valence_true"].notna()]
    return pd.DataFrame({"true_valence": block["valence_true"].to_numpy(), "predicted_valence": block["valence"].to_numpy()})


def submission(rows: pd.DataFrame, subset: str, test: str) -> pd.DataFrame:
    """The challenge's submission format: name, discrete, valence (seed-averaged logits and valence)."""
    block = rows[(rows["subset"] == subset) & (rows["test"] == test)]
    labels = predicted_labels(rows)
    mean = block.groupby("sample_id", sort=True)[[*logit_columns(labels), "valence"]].mean()
    return pd.DataFrame({"name": mean.index, "discrete": np.array(labels)[mean[logit_columns(labels)].to_numpy().argmax(1)],
                         "valence": mean["valence"].to_numpy()})


def markdown_table(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    def fmt(v) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.4f}"
        return "" if v is None or v is pd.NA else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def correlation(a, b) -> float | None:
    """Pearson r; None when either side is constant (no correlation is defined)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def emotion_valence(rows: pd.DataFrame, subset: str, tests=("train-oof", "test1")) -> pd.DataFrame:
    """Per class: how discrete emotion and valence go together, in the labels and in the model.

    truth_r = corr(1[label = c], true valence) (point-biserial); model_r = corr(p_c, predicted valence),
    the same relation inside the model's two heads. Labelled items with valence, first seed."""
    records = []
    for test in tests:
        block = first_seed(rows, subset, test)
        block = block[block["label"].notna() & block["valence_true"].notna()]
        labels = predicted_labels(block)
        y, v_true = label_index(block["label"], labels), block["valence_true"].to_numpy(float)
        probs = apply_temperature(block[logit_columns(labels)].to_numpy(float), 1.0)
        for c, name in enumerate(labels):
            mine = y == c
            records.append({"test": test, "label": name, "n": int(mine.sum()),
                            "mean_valence": float(v_true[mine].mean()) if mine.any() else None,
                            "truth_r": correlation(mine, v_true),
                            "model_r": correlation(probs[:, c], block["valence"].to_numpy(float))})
    return pd.DataFrame(records)


def calibration(rows: pd.DataFrame, subset: str, test: str = "test1", n_bins: int = 15) -> dict:
    """Temperature scaling fit on the out-of-fold logits (first seed): ECE and NLL of the raw and the
    scaled out-of-fold probabilities, and ECE on `test` with the same temperature (held out from the fit)."""
    oof = first_seed(rows, subset, "train-oof")
    oof = oof[oof["label"].notna()]
    labels = predicted_labels(oof)
    report = calibrate(oof[logit_columns(labels)].to_numpy(float), label_index(oof["label"], labels), n_bins)
    out = {"subset": subset, "n_bins": n_bins, "temperature": report.temperature, "oof_n": report.n,
           "oof_ece_raw": report.ece_before, "oof_ece_scaled": report.ece_after,
           "oof_nll_raw": report.nll_before, "oof_nll_scaled": report.nll_after}
    held = first_seed(rows, subset, test)
    held = held[held["label"].notna()]
    if len(held):
        logits, y = held[logit_columns(labels)].to_numpy(float), label_index(held["label"], labels)
        out |= {f"{test}_n": len(held), f"{test}_ece_raw": ece(apply_temperature(logits, 1.0), y, n_bins),
                f"{test}_ece_scaled": ece(apply_temperature(logits, report.temperature), y, n_bins)}
    return out
