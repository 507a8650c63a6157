"""`mer`: the command line. One subcommand per DVC stage (dvc.yaml runs exactly these), plus tools.

Every stage command reads its section of params.yaml (`--params`) and takes its input and output
paths as options whose defaults are the paths dvc.yaml uses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

Params = Annotated[Path, typer.Option(help="params.yaml to read the stage's section from")]
MANIFEST = Path("data/manifest.parquet")
MEDIA = Path("featurestore/media.zarr")
CORRUPTED = Path("featurestore/corrupted.zarr")
FEATURES = Path("featurestore/features")


def _echo(result) -> None:
    typer.echo(json.dumps(result, indent=2, default=str) if isinstance(result, dict) else str(result))


@app.command("demo-corpus")
def demo_corpus(params: Params = Path("params.yaml"),
                out: Annotated[Path, typer.Option(help="corpus folder to write (clips/ + manifest.csv)")] = Path("data/demo")):
    """Generate the demo corpus: talking-face MP4 clips (H.264 + AAC) with transcripts, labels over the six
    MER 2023 classes, valence and every split, with a tunable emotion signal per modality (demo.*)."""
    from stages import demo

    _echo(demo.run(params, out))


@app.command()
def prepare(params: Params = Path("params.yaml"),
            manifest: Annotated[Path, typer.Option(help="Parquet manifest to write")] = MANIFEST,
            rejects: Annotated[Path, typer.Option(help="CSV of rejected rows with reasons")] = Path("data/rejects.csv")):
    """Read the corpus named by prepare.adapter (mer2023 | csv | demo | ravdess | cremad) at prepare.root,
    validate every row (media inside the root, readable, label in prepare.labels after prepare.label_map, valid
    valence, unique id), record which modalities each item has and write the manifest. Fails above
    prepare.max_reject_rate (items left out by the label map do not count)."""
    from stages import prepare as stage

    typer.echo(stage.run(params, manifest, rejects).summary())


@app.command()
def extract(params: Params = Path("params.yaml"), manifest: Annotated[Path, typer.Option()] = MANIFEST,
            store: Annotated[Path, typer.Option(help="media store (Zarr) to update")] = MEDIA,
            failures: Annotated[Path, typer.Option(help="JSON lines, one failed clip each")] = Path("data/extract_failures.jsonl")):
    """Decode each clip once: frames at extract.fps (max extract.max_frames), 16 kHz mono audio, the main face
    aligned per frame, and the transcript (given, ASR, or missing). Only new or changed clips are processed;
    an interrupted run resumes. Fails above extract.max_failure_rate."""
    from stages import extract as stage

    _echo(stage.run(params, manifest, store, failures))


@app.command()
def corrupt(params: Params = Path("params.yaml"), manifest: Annotated[Path, typer.Option()] = MANIFEST,
            clean: Annotated[Path, typer.Option(help="clean media store (babble noise source)")] = MEDIA,
            out: Annotated[Path, typer.Option(help="store of corrupted views")] = CORRUPTED,
            failures: Annotated[Path, typer.Option()] = Path("data/corrupt_failures.jsonl")):
    """MER-NOISE: corrupted views of the corrupt.splits items. View 'noisy' draws per clip an SNR from
    corrupt.snr_db and a blur factor from corrupt.blur (seeded by base.seed and the sample id); views
    'snr<S>' add noise at each corrupt.robustness_snr_db with no blur."""
    from stages import corrupt as stage

    _echo(stage.run(params, manifest, clean, out, failures))


@app.command()
def encode(feature: Annotated[str, typer.Argument(help="a feature name from encode.features")],
           params: Params = Path("params.yaml"),
           clean: Annotated[Path, typer.Option()] = MEDIA, corrupted: Annotated[Path, typer.Option()] = CORRUPTED,
           out: Annotated[Path | None, typer.Option(help="feature store; default featurestore/features/<feature>.zarr")] = None):
    """Run one feature's encoder over every media view, computing only items whose cache key (encoder
    identity + input content) is not in the feature store yet."""
    from stages import encode as stage

    _echo(stage.run(params, feature, clean, corrupted, out or FEATURES / f"{feature}.zarr"))


@app.command()
def train(params: Params = Path("params.yaml"), manifest: Annotated[Path, typer.Option()] = MANIFEST,
          clean: Annotated[Path, typer.Option()] = MEDIA, corrupted: Annotated[Path, typer.Option()] = CORRUPTED,
          features: Annotated[Path, typer.Option(help="folder of feature stores")] = FEATURES,
          predictions: Annotated[Path, typer.Option()] = Path("models/predictions.parquet"),
          metrics: Annotated[Path, typer.Option()] = Path("metrics/cv.json"),
          curves: Annotated[Path, typer.Option()] = Path("metrics/train_curves.csv")):
    """Five-fold cross-validation of the attention fusion (MER 2023 protocol) for every modality subset in
    train.ablation; the fold ensembles predict every test split and corrupted view."""
    from stages import train as stage

    report = stage.run(params, manifest, clean, corrupted, features, predictions, metrics, curves)
    for run in report["runs"]:
        typer.echo(f"{run['subset']:>4} seed {run['seed']}: CV F1 {run['f1_weighted']:.3f} "
                   f"MSE {run.get('valence_mse', float('nan')):.3f}")


@app.command()
def pseudolabel(params: Params = Path("params.yaml"), manifest: Annotated[Path, typer.Option()] = MANIFEST,
                clean: Annotated[Path, typer.Option()] = MEDIA, corrupted: Annotated[Path, typer.Option()] = CORRUPTED,
                features: Annotated[Path, typer.Option()] = FEATURES,
                predictions: Annotated[Path, typer.Option(help="train's predictions")] = Path("models/predictions.parquet"),
                cv_metrics: Annotated[Path, typer.Option()] = Path("metrics/cv.json"),
                out: Annotated[Path, typer.Option()] = Path("models/pseudolabel_predictions.parquet"),
                metrics: Annotated[Path, typer.Option()] = Path("metrics/pseudolabel.json"),
                selected: Annotated[Path, typer.Option()] = Path("metrics/pseudolabel_selected.csv")):
    """MER-SEMI: class thresholds from the main model's out-of-fold confidences (eta-quantile of correct
    predictions, pseudolabel.eta), select unlabelled test3 items above them, retrain with the selection."""
    from stages import pseudolabel as stage

    _echo(stage.run(params, manifest, clean, corrupted, features, predictions, cv_metrics, out, metrics, selected))


@app.command()
def evaluate(params: Params = Path("params.yaml"), manifest: Annotated[Path, typer.Option()] = MANIFEST,
             predictions: Annotated[Path, typer.Option()] = Path("models/predictions.parquet"),
             semi_predictions: Annotated[Path, typer.Option()] = Path("models/pseudolabel_predictions.parquet"),
             cv_metrics: Annotated[Path, typer.Option()] = Path("metrics/cv.json"),
             out: Annotated[Path, typer.Option(help="metrics folder")] = Path("metrics"),
             submissions: Annotated[Path, typer.Option()] = Path("models/submissions")):
    """Score MER-MULTI (test1), MER-NOISE (test2 on evaluate.noise_view) and MER-SEMI (test3 labelled items),
    write the ablation table, robustness curve, confusion matrix, per-class F1, valence scatter and the
    challenge-format submission files."""
    from stages import evaluate as stage

    _echo(stage.run(params, manifest, predictions, semi_predictions, cv_metrics, out, submissions))


@app.command()
def doctor(params: Params = Path("params.yaml")):
    """List each dependency, face detector and encoder with whether it can run here and, if not, why."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pipeline import doctor as doc
    from pipeline.config import EncodeConfig, ExtractConfig, load_section

    exists = params.is_file()
    encode_cfg = load_section("encode", params) if exists else EncodeConfig()
    extract_cfg = load_section("extract", params) if exists else ExtractConfig()
    table = Table("component", "ok", "details", title="mer doctor")
    rows = doc.package_rows() + doc.runtime_rows() + doc.detector_rows(extract_cfg.face_model_dir) + doc.encoder_rows(encode_cfg)
    for name, ok, why in rows:
        table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", escape(why))
    Console(width=160).print(table)


def main() -> None:
    app()
