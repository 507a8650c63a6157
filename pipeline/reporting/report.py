"""`mer report`: one self-contained HTML page (figures embedded as PNG) and a markdown summary of a run,
read from the metrics folder `evaluate`, `train` and `pseudolabel` write.

A missing or unreadable file leaves a note in its section instead of stopping the report.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import outputs
from pipeline.errors import MissingInput
from pipeline.evaluation import ABLATION_COUNTS, PAPER_BASELINE, markdown_table
from pipeline.training.metrics import combined

from . import figures
from .run_info import run_rows

TASKS = dict(zip(outputs.TASKS, ("MER-MULTI", "MER-NOISE", "MER-SEMI")))
FIGURES = {"f1_weighted": "weighted F1", "valence_mse": "valence MSE", "combined": "F1 - 0.25 MSE"}


@dataclass
class Section:
    title: str
    html: list[str] = field(default_factory=list)
    markdown: list[str] = field(default_factory=list)

    def table(self, frame: pd.DataFrame) -> None:
        self.html.append(html_table(frame))
        self.markdown.append(markdown_table(frame))

    def figure(self, fig, caption: str) -> None:
        """The figure as an embedded PNG, with what its axes show as JSON in data-plotted."""
        uri, data = figures.render(fig)
        self.html.append(f'<figure data-plotted="{html.escape(json.dumps(data))}"><img src="{uri}" '
                         f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>')

    def note(self, text: str) -> None:
        self.html.append(f'<p class="note">{html.escape(text)}</p>')
        self.markdown.append(f"_{text}_\n")


def html_table(frame: pd.DataFrame) -> str:
    """A plain HTML table; numeric columns right-aligned, floats to 4 decimals, missing values as a dash."""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    cell = lambda tag, text, num: f'<{tag} class="num">{text}</{tag}>' if num else f"<{tag}>{text}</{tag}>"  # noqa: E731
    text = lambda v: "—" if pd.isna(v) else (f"{v:.4f}" if isinstance(v, float) else html.escape(str(v)))  # noqa: E731
    head = "".join(cell("th", html.escape(str(c)).replace("_", "_<wbr>"), n) for c, n in zip(frame.columns, numeric))
    rows = ["<tr>" + "".join(cell("td", text(v), n) for v, n in zip(row, numeric)) + "</tr>"
            for row in frame.itertuples(index=False)]
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


class MetricsFolder:
    """Reads files of the metrics folder; a missing or unreadable one becomes a note in `section`."""

    def __init__(self, root: Path):
        self.root = root
        self.missing: list[str] = []

    def rounds(self) -> list[str]:
        """Pseudo-labelling rounds with a selection file, in round order (r1, r2, ..., r10)."""
        found = [p.parent.name for p in (self.root / outputs.PSEUDOLABEL).glob(f"*/{outputs.SELECTION}")]
        return sorted(found, key=lambda r: (len(r), r))

    def labels(self) -> tuple[str, ...]:
        """The run's label set in model order, as evaluate recorded it in the task figures (or, failing
        those, as the rows of its per-class F1 table); empty when none of them is readable."""
        for name in TASKS:
            try:
                return tuple(json.loads((self.root / outputs.task_file(name)).read_text())["labels"])
            except (OSError, ValueError, KeyError):
                continue
        try:
            return tuple(pd.read_csv(self.root / outputs.PER_CLASS_F1)["label"])
        except (OSError, ValueError, KeyError):
            return ()

    def read(self, name: str, section: Section):
        path = self.root / name
        if not path.is_file():
            self.missing.append(name)
            section.note(f"{path} not found: run the stage that writes it (dvc repro).")
            return None
        try:
            return json.loads(path.read_text()) if path.suffix == ".json" else pd.read_csv(path)
        except (OSError, ValueError) as exc:
            section.note(f"{path} could not be read: {exc}")
            return None


def headline(folder: MetricsFolder) -> Section:
    section = Section("Challenge figures beside the MER 2023 baseline")
    rows = []
    for name, task in TASKS.items():
        run = folder.read(outputs.task_file(name), section)
        if run is None:
            continue
        paper = dict(PAPER_BASELINE[name])
        if "valence_mse" in paper:
            paper["combined"] = combined(paper["f1_weighted"], paper["valence_mse"])
        for key, label in FIGURES.items():
            if key in run:
                ours, theirs = run[key], paper.get(key)
                rows.append({"task": task, "figure": label, "this run": ours, "MER 2023 baseline": theirs,
                             "difference": None if theirs is None else ours - theirs,
                             "items": int(run.get("n", 0)), "subset": run.get("subset", "")})
    if rows:
        section.table(pd.DataFrame(rows))
        section.note("Baseline: the MER 2023 paper's best attention-fusion results on the challenge data; "
                     "a demo-corpus run is not comparable in absolute terms. Its F1 - 0.25 MSE is computed "
                     "from the published F1 and MSE.")
    return section


def track(folder: MetricsFolder) -> Section | None:
    """The figures of the track evaluate.protocol scored (metrics/track.json); none for mer2023, whose
    figures the challenge section shows."""
    path = folder.root / outputs.TRACK
    data = json.loads(path.read_text()) if path.is_file() else {}
    protocol = data.get("protocol", "mer2023")
    if protocol == "mer2023":
        return None
    section = Section(f"Track figures (evaluate.protocol: {protocol})")
    if not data.get("n"):
        section.note("No candidate (test1) has a truth to score against: the run only predicts and submits.")
    elif protocol == "fg":
        section.table(pd.DataFrame([{"level": level, "wheel": wheel, **{k: w[k] for k in ("f", "p", "r", "n")}}
                                    for level in ("level1", "level2")
                                    for wheel, w in [("mean", data[level] | {"n": data["n"]}), *data[level]["wheels"].items()]]))
        section.note("Emotion-wheel metric (MER-FG): per wheel, precision and recall of the candidates' predicted "
                     "label lists mapped to wheel categories, averaged over candidates with a category; F from their "
                     "means; the mean row averages the wheels.")
    else:
        section.table(pd.DataFrame([{"figure": "weighted F1", "value": data.get("f1_weighted")},
                                    {"figure": "accuracy", "value": data.get("accuracy")},
                                    {"figure": "weighted F1, labelled data only", "value": data.get("f1_weighted_labelled_only")},
                                    {"figure": "labelled candidates", "value": float(data["n"])}]))
    return section


def faces(folder: MetricsFolder) -> Section:
    """Per split: how many items have frames, how many got no face at all, the share of frames with one."""
    section = Section("Faces found (extract)")
    by_split = folder.read(outputs.FACES, section)
    if by_split is not None:
        table = pd.DataFrame([{"split": split, "items with frames": s["items"], "items without a face": s["no_face"],
                               "frames with a face": s["face_found_rate"]} for split, s in by_split.items()])
        section.table(table)
        listed = by_split.get("all", {}).get("no_face_items", [])
        if listed:
            section.note(f"{len(listed)} item(s) without a face, e.g. " + "; ".join(listed[:5])
                         + f" (all in {folder.root / outputs.FACES})")
    return section


def ablation(folder: MetricsFolder) -> Section:
    section = Section("Ablation: modality subsets")
    by_subset = folder.read(outputs.ABLATION, section)
    if by_subset is not None:
        table = pd.DataFrame.from_dict(by_subset, orient="index").rename_axis("subset").reset_index()
        counts = [c for c in ABLATION_COUNTS if c in table]
        # two tables, figures then counts, so neither is wider than the page
        section.table(table.drop(columns=counts))
        section.note("Items scored per split (n) and items scored by the class prior for lack of a modality (fallback):")
        section.table(table[["subset", *counts]].astype({c: "Int64" for c in counts}))
    return section


def per_class(folder: MetricsFolder) -> Section:
    section = Section("Per class (MER-MULTI, main subset)")
    confusion = folder.read(outputs.CONFUSION, section)
    if confusion is not None:
        labels = folder.labels() or tuple(sorted({*confusion["actual"], *confusion["predicted"]}))  # as seen
        section.figure(figures.confusion_matrix(confusion, labels),
                       f"Confusion matrix on test1 (clip counts), n = {len(confusion)}")
    valence = folder.read(outputs.VALENCE, section)
    if valence is not None:
        section.figure(figures.valence_scatter(valence), f"Predicted against true valence on test1, n = {len(valence)}")
    scores = folder.read(outputs.PER_CLASS_F1, section)
    if scores is not None:
        section.table(scores)
    return section


def robustness(folder: MetricsFolder) -> Section:
    section = Section("Robustness to noise and blur")
    curve = folder.read(outputs.ROBUSTNESS, section)
    if curve is None:
        return section
    if curve["snr_db"].notna().any() or (curve["blur"] > 1).any():
        section.figure(figures.robustness_curve(curve), "test2 with noise at fixed SNRs (no blur) and with blur at "
                       f"fixed factors (clean audio); dotted: the clean view; {item_counts(curve)}")
    else:
        section.note("robustness.csv has no fixed-SNR or blur view (corrupt.robustness_snr_db and robustness_blur "
                     "are empty): no curve.")
    by_snr = curve.pivot_table(index="subset", columns="snr", values="f1_weighted", sort=False)
    by_snr.columns.name = None
    section.note("Weighted F1 per subset and view (numbers: SNR in dB with no blur, inf: the control; blur<r>: "
                 "clean audio):")
    section.table(by_snr.reset_index())
    if curve["snr_db"].notna().any():
        section.note(control_note(curve))
    return section


def control_note(curve: pd.DataFrame) -> str:
    """What the gap between the clean line and the SNR curve is made of, read off the control view (`inf`:
    the SNR views' code with the noise mixed in at +inf dB and blur 1), whose figures must be the clean ones."""
    shown = ["f1_weighted", "valence_mse"]
    control = curve[curve["snr_db"] == np.inf].set_index("subset")[shown]
    if control.empty:
        return ("No control view (noise at +inf dB through the same code; corrupt makes it with the SNR views): "
                "nothing here tells the noise's effect from a defect of the corruption path.")
    clean = curve[curve["view"] == "clean"].set_index("subset")[shown].reindex(control.index)
    differs = [s for s in control.index if not control.loc[s].equals(clean.loc[s])]
    if differs:
        listed = ", ".join(f"{s} {control.loc[s, 'f1_weighted']:.3f} (clean {clean.loc[s, 'f1_weighted']:.3f})"
                           for s in differs)
        return (f"The control view (inf: the SNR views' code, noise at +inf dB, blur 1) does not reproduce the clean "
                f"figures: weighted F1 {listed}. The corruption path itself changes the items, so part of the gap "
                "below the clean line is a defect of that path, not noise.")
    finite = curve[np.isfinite(curve["snr_db"])]
    top = finite["snr_db"].max() if len(finite) else None
    at_top = finite[finite["snr_db"] == top].set_index("subset")["f1_weighted"].reindex(clean.index)
    moved = [f"{s} {at_top[s]:.3f} (clean {clean.loc[s, 'f1_weighted']:.3f})" for s in clean.index
             if top is not None and at_top[s] != clean.loc[s, "f1_weighted"]]
    gap = f" At {top:g} dB: {', '.join(moved)}." if moved else ""
    n = int(curve["n"].max()) if "n" in curve and curve["n"].notna().any() else 0
    chance = f" With n = {n} items one changed prediction moves weighted F1 by about {1 / n:.3f}." if n else ""
    return ("The control view (inf: the SNR views' code, babble drawn and mixed in at +inf dB, blur 1) scores exactly "
            "the clean figures for every subset: the corruption path adds nothing, so the gap between the clean line "
            f"and the SNR curve is the noise's effect on the features.{gap}{chance}")


def item_counts(curve: pd.DataFrame) -> str:
    """"n = 40 items per point", or the range when subsets or views cover different items."""
    if "n" not in curve or curve["n"].isna().all():
        return "item counts not recorded (robustness.csv from an older evaluate)"
    low, high = int(curve["n"].min()), int(curve["n"].max())
    return f"n = {low} items per point" if low == high else f"n = {low}-{high} items per point"


def pseudolabels(folder: MetricsFolder) -> Section:
    """The last pseudo-labelling round in detail, every round in one table, and the eta study if run."""
    section = Section("Pseudo-labels (MER-SEMI)")
    rounds = folder.rounds()
    if not rounds:
        section.note(f"{folder.root / outputs.PSEUDOLABEL} holds no round: run the pseudolabel stages (dvc repro).")
        return section
    summaries = {r: folder.read(f"{outputs.round_folder(r)}/{outputs.SELECTION}", section) for r in rounds}
    last = rounds[-1]
    summary, selected = summaries[last], folder.read(f"{outputs.round_folder(last)}/{outputs.SELECTED}", section)
    if summary is None:
        return section
    section.table(pd.DataFrame([{"round": r, "eta": s["eta"], "unlabelled": s["unlabelled"], "selected": s["selected"],
                                 "precision": s.get("precision")} for r, s in summaries.items() if s is not None]))
    if summary.get("note"):
        section.note(f"{last}: {summary['note']}")
    if selected is None or selected.empty:
        section.note(f"{last}: no selected items, no threshold curve.")
    else:
        section.figure(figures.threshold_curve(selected, summary["thresholds"]),
                       f"{last}: items kept and their precision under a stricter global confidence cut; "
                       f"dashed: the per-class thresholds; n = {len(selected)} selected, "
                       f"{int(selected['true_label'].notna().sum())} with a known label")
    section.table(per_class_selection(summary, selected, folder.labels() or tuple(summary["thresholds"])))
    study = folder.root / outputs.SEMI_STUDY
    if study.is_file():
        frame = pd.read_csv(study)
        section.figure(figures.eta_study(frame), "Threshold study: test F1 against eta and against the number of "
                       f"pseudo-labels (one point per experiment, final round; n = {frame['experiment'].nunique()} "
                       "experiments)")
    else:
        section.note("No threshold study yet: run the eta sweep and `mer semi-study` (docs/semi.md).")
    return section


def per_class_selection(summary: dict, selected: pd.DataFrame | None, labels: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    for label in labels:
        row = {"class": label, "threshold": summary["thresholds"].get(label), "selected": summary["per_class"].get(label)}
        if selected is not None and not selected.empty:
            mine = selected[(selected["label"] == label) & selected["true_label"].notna()]
            row["precision"] = figures.precision(mine)
        rows.append(row)
    return pd.DataFrame(rows)


def training(folder: MetricsFolder) -> Section:
    section = Section("Training curves (main subset)")
    files = sorted((folder.root / outputs.CURVES).glob(f"{outputs.CURVE_PREFIX}*.csv"))
    if not files:
        section.note(f"{folder.root / outputs.CURVES} holds no fold curves (LightGBM has none; else run train).")
        return section
    curves = pd.concat([pd.read_csv(f).assign(fold=int(f.stem.removeprefix(outputs.CURVE_PREFIX))) for f in files])
    section.figure(figures.training_curves(curves), "Validation F1 - 0.25 MSE per epoch, one line per fold "
                   f"(n = {len(files)} folds)")
    return section


SECTIONS = (track, headline, faces, ablation, per_class, robustness, pseudolabels, training)

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
th, td { padding: .3em .5em; border-bottom: 1px solid #e3e3e3; text-align: left; }
th { background: #f4f6f8; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.flow { display: flex; flex-wrap: wrap; gap: .5em 2.5em; align-items: flex-start; }
.flow > .note { flex-basis: 100%; margin: .3em 0; }
div.table { max-width: 100%; overflow-x: auto; }
figure { margin: .8em 0; max-width: 100%; } img { max-width: 100%; height: auto; }
figcaption, .note { color: #555; font-size: .9em; }
"""


def render_html(title: str, sections: list[Section]) -> str:
    body = "\n".join(f'<section><h2>{html.escape(s.title)}</h2>\n<div class="flow">' + "\n".join(s.html) + "</div></section>"
                     for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}\n"]
    parts += [f"## {s.title}\n\n" + "\n".join(s.markdown) for s in sections if s.markdown]
    return "\n".join(parts)


def run_header(root: Path, params: Path | None, manifest: Path | None) -> Section:
    section = Section("Run")
    section.table(pd.DataFrame(run_rows(root, params, manifest), columns=["", "value"]))
    return section


def write_report(metrics: Path, html_out: Path, markdown_out: Path, title: str = "Emotion recognition run",
                 params: Path | None = None, manifest: Path | None = None, root: Path = Path(".")) -> dict:
    if not metrics.is_dir():
        raise MissingInput(f"--metrics {metrics}: no such folder; run the pipeline first (dvc repro) or pass the "
                           f"metrics folder it wrote")
    folder = MetricsFolder(metrics)
    sections = [run_header(root, params, manifest), *filter(None, (make(folder) for make in SECTIONS))]
    for path, text in ((html_out, render_html(title, sections)), (markdown_out, render_markdown(title, sections))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"html": str(html_out), "markdown": str(markdown_out), "missing": folder.missing}
