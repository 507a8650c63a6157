"""pseudolabel@<round>: one round of MER-SEMI pseudo-labelling (Algorithm 1; params: pseudolabel.*).

`pseudolabel.rounds` maps each round's name to the predictions it starts from: train's for the first,
the previous round's for the next, so DVC chains the rounds through their files. A round takes its
class thresholds from the start model's out-of-fold predictions (not biased by training fit), selects
unlabelled test3 items from the start model's predictions of them, retrains the main subset on labelled +
selected items and predicts the same test splits (pipeline.training.semi). An empty selection retrains
nothing: the round keeps the start model's predictions and its metrics say so.
"""

import json
from pathlib import Path

from pipeline import interrupts, outputs
from pipeline.config import load_section
from pipeline.inputs import PREDICTIONS_NEED, TRAIN, read_manifest, read_record, read_table
from pipeline.labels import manifest_labels
from pipeline.progress import progress
from pipeline.store.media import corrupted_views
from pipeline.training import semi
from pipeline.training.run import Views, load_tables

STEPS = ("load features", "select and retrain", "write")


def run(params: Path, *, round_name: str, manifest: Path, clean: Path, corrupted: Path | None, features: Path,
        cv_metrics: Path, out: Path, metrics: Path) -> dict:
    cfg, train_cfg = load_section("pseudolabel", params), load_section("train", params)
    start_path = semi.round_start(cfg, round_name)
    # one bar per round: the retraining step is the long one (folds x epochs of the main subset)
    with progress(len(STEPS), f"pseudolabel {round_name}", "step") as bar:
        bar.set_postfix_str(STEPS[0])
        rows = read_manifest(manifest)
        main = read_record(cv_metrics, TRAIN, ("main_subset",))["main_subset"]
        start = semi.model_predictions(read_table(start_path, f"{TRAIN} or an earlier round", PREDICTIONS_NEED),
                                       main, train_cfg.seeds[0])
        stores = {m: features / f"{n}.zarr" for m, n in train_cfg.features.items()}
        tables = load_tables(rows, Views(clean, corrupted_views(corrupted)), stores, train_cfg.feature_norm,
                             manifest_labels(rows))
        bar.update()
        bar.set_postfix_str(f"{STEPS[1]} ({main}, {train_cfg.folds} folds)")
        predictions, picked, thresholds = semi.run_round(tables, rows, start, cfg, train_cfg)
        bar.update()
        bar.set_postfix_str(f"{STEPS[2]} ({len(picked)} selected)")
        with interrupts.deferred():   # a Ctrl-C from here on stops the run once every output is written whole
            out.parent.mkdir(parents=True, exist_ok=True)
            predictions.to_parquet(out, index=False)
            metrics.mkdir(parents=True, exist_ok=True)
            picked = semi.with_truth(picked, rows)
            picked.to_csv(metrics / outputs.SELECTED, index=False)
            semi.class_balance(picked, thresholds, semi.labelled_oof(start, rows)).to_csv(metrics / outputs.CLASS_BALANCE,
                                                                                            index=False)
            report = semi.round_report(round_name, str(start_path), cfg, thresholds, picked, start, predictions, rows)
            (metrics / outputs.SELECTION).write_text(json.dumps(report, indent=2))
        bar.update()
    return report
