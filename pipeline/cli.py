"""`mer`: the command line. One subcommand per DVC stage (dvc.yaml runs exactly these), plus tools.

Every stage command reads its section of params.yaml (`--params`, default ./params.yaml) and takes each
input and output path as a required option: dvc.yaml is the one place that names them, and a stage run by
hand must name them too, so that no default can overwrite another stage's (or round's) outputs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Literal

import typer

from pipeline import environment
from pipeline.outputs import METRICS, ROUND, SELECTION, SEMI_STUDY, round_folder

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _App(typer.Typer):
    """The `mer` entry point: expected errors (pipeline.errors.MerError, and a file system refusing a named
    path) print their message without a traceback, and Ctrl-C says what was interrupted; anything else is a
    bug: its traceback, then a line asking for a report."""

    def __call__(self, *args, **kwargs):
        from pipeline import interrupts
        from pipeline.errors import MerError

        try:
            with interrupts.handled():   # Ctrl-C and SIGTERM stop every thread (pipeline.interrupts)
                return super().__call__(*args, **kwargs)
        except SystemExit as done:
            if done.code == 130:   # typer's exit for KeyboardInterrupt, SIGTERM's too here
                signum, name = interrupts.last_signal(), f"mer {_RUN['command']}".strip()
                typer.echo(f"\n{name}: interrupted ({signal.Signals(signum).name}). "
                           f"{_RERUN.get(_RUN['command'], _START_OVER)}", err=True)
                sys.exit(128 + signum)
            raise
        except MerError as err:
            _fail(err, str(err), err.exit_code)
        except OSError as err:
            if err.filename is None:   # no path the user could check
                _bug()
            _fail(err, f"{err.filename}: {err.strerror or err}: check that path (a file where a folder is expected, "
                       "its permissions, the free space)", 74)   # EX_IOERR
        except Exception:
            _bug()


def names(module: str, registry: str):
    """A Literal of the names in a registry: typer lists them in --help and refuses any other value. Evaluated
    when typer reads the annotations (annotations are strings here), not when this module is imported."""
    import importlib

    return Literal[tuple(getattr(importlib.import_module(module), registry))]


def _fail(err: Exception, message: str, code: int):
    if _RUN["debug"] or os.environ.get("MER_DEBUG", "") not in ("", "0"):
        raise err
    typer.echo(f"mer {_RUN['command']}: error: {message}\n(`mer --debug ...` or MER_DEBUG=1 shows the traceback)",
               err=True)
    sys.exit(code)


def _bug():
    traceback.print_exc()
    typer.echo(f"mer {_RUN['command']}: this is a bug in mer, not a problem with your input or settings: please "
               "report it with the command line and the traceback above.", err=True)
    sys.exit(70)   # EX_SOFTWARE


_RUN = {"command": "", "debug": False}
# What the same command does when run again after an interrupt; the stages that commit store parts resume.
_RESUME = ("Every committed store part is kept and nothing half-written is ever read: run the same command again "
           "to resume from them.")
_RERUN = {"extract": _RESUME, "corrupt": _RESUME, "encode": _RESUME,
          **dict.fromkeys(("train", "pseudolabel"), "Its outputs are written whole after training or not at all: "
                          "run the same command again; training starts over from the first epoch.")}
_START_OVER = "Nothing half-written is kept: run the same command again; it starts over."
app = _App(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
           rich_markup_mode=None,  # plain click help: no "<bool>" placeholder beside each flag
           context_settings={"help_option_names": ["-h", "--help"]})  # subcommands inherit it


@app.callback()
def _options(ctx: typer.Context,
             debug: Annotated[bool, typer.Option("--debug", help="show the traceback of expected errors too "
                                                 "(or set MER_DEBUG=1)")] = False,
             version: Annotated[bool, typer.Option("--version", callback=lambda v: _version(v), is_eager=True,
                                                   help="Print the version and exit.")] = False):
    _RUN.update(command=ctx.invoked_subcommand or "", debug=debug)
    environment.return_large_frees()

Params = Annotated[Path, typer.Option(help="params.yaml to read the stage's section from")]
# The paths every stage command requires (dvc.yaml passes each one).
Manifest = Annotated[Path, typer.Option(help="Parquet manifest (written by `mer prepare`)")]
Clean = Annotated[Path, typer.Option(help="clean media store (Zarr, written by `mer extract`)")]
Corrupted = Annotated[Path, typer.Option(help="folder of corrupted views (written by `mer corrupt`; absent: none)")]
Features = Annotated[Path, typer.Option(help="folder of feature stores, <feature>.zarr (written by `mer encode`)")]
CvMetrics = Annotated[Path, typer.Option(help="cross-validation metrics (written by `mer train`)")]
LabelLists = Annotated[Path, typer.Option(help="the candidates' predicted label lists (Parquet, MER-FG; written by "
                                               "`mer train`, empty without label lists)")]
# Defaults of the tools (not stages) that read the project's stores: where dvc.yaml puts them.
MEDIA = Path("featurestore/media.zarr")
FEATURES = Path("featurestore/features")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"mer-pipeline {version('mer-pipeline')}")
        raise typer.Exit()


def _echo(result) -> None:
    typer.echo(json.dumps(result, indent=2, default=str) if isinstance(result, dict) else str(result))


@app.command("demo-corpus")
def demo_corpus(out: Annotated[Path, typer.Option(help="corpus folder to write (clips/ + manifest.csv)")],
                params: Params = Path("params.yaml"),
                workers: Annotated[int, typer.Option(help="processes (0 = all cores); the bytes written do not depend "
                                                           "on it")] = 0):
    """Generate the demo corpus: talking-face MP4 clips (H.264 + AAC) with transcripts, labels over the six
    MER 2023 classes, valence and every split, with a tunable emotion signal per modality (demo.*).
    The same demo.* params give the same bytes on any machine and any worker count."""
    from stages import demo

    _echo(demo.run(params, out=out, workers=workers))


@app.command()
def prepare(manifest: Annotated[Path, typer.Option(help="Parquet manifest to write")],
            rejects: Annotated[Path, typer.Option(help="CSV of rejected rows with reasons")],
            params: Params = Path("params.yaml")):
    """Read the corpus named by prepare.adapter (docs/components.md lists the adapters) at prepare.root,
    validate every row (media inside the root, readable, label in prepare.labels after prepare.label_map, valid
    valence, unique id), record which modalities each item has and write the manifest. Fails above
    prepare.max_reject_rate (items left out by the label map do not count)."""
    from stages import prepare as stage

    typer.echo(stage.run(params, manifest=manifest, rejects=rejects).summary())


@app.command()
def extract(manifest: Manifest,
            store: Annotated[Path, typer.Option(help="media store (Zarr) to update")],
            failures: Annotated[Path, typer.Option(help="JSON lines, one failed clip each")],
            faces: Annotated[Path, typer.Option(help="JSON: per split, items without a face and the face-found rate")],
            params: Params = Path("params.yaml")):
    """Decode each clip once: frames at extract.fps (max extract.max_frames), 16 kHz mono audio, the main face
    aligned per frame, and the transcript (given, ASR, or missing). Only new or changed clips are processed;
    an interrupted run resumes. Fails above extract.max_failure_rate."""
    from stages import extract as stage

    _echo(stage.run(params, manifest=manifest, store=store, failures=failures, faces=faces))


@app.command()
def corrupt(manifest: Manifest,
            clean: Annotated[Path, typer.Option(help="clean media store (the clips, and the babble noise source)")],
            out: Annotated[Path, typer.Option(help="folder of corrupted views to update, one media store each")],
            failures: Annotated[Path, typer.Option(help="JSON lines, one failed clip and view each")],
            params: Params = Path("params.yaml")):
    """MER-NOISE: corrupted views of the corrupt.splits items. View 'noisy' draws per clip an SNR from
    corrupt.snr_db and a blur factor from corrupt.blur (seeded by base.seed and the sample id); views
    'snr<S>' add noise at each corrupt.robustness_snr_db with no blur, views 'blur<r>' blur by each
    corrupt.robustness_blur; with the SNR views comes their control 'snrinf' (noise at +inf dB, blur 1: the clean
    items)."""
    from stages import corrupt as stage

    _echo(stage.run(params, manifest=manifest, clean=clean, out=out, failures=failures))


@app.command()
def encode(feature: Annotated[str, typer.Argument(metavar="FEATURE", help="a feature name from encode.features")],
           clean: Clean, corrupted: Corrupted,
           out: Annotated[Path, typer.Option(help="feature store (Zarr) to update")],
           params: Params = Path("params.yaml")):
    """Run one feature's encoder over every media view, computing only items whose cache key (encoder
    identity + input content) is not in the feature store yet."""
    from stages import encode as stage

    _echo(stage.run(params, feature=feature, clean=clean, corrupted=corrupted, out=out))


@app.command("export-features")
def export_features(store: Annotated[Path, typer.Argument(metavar="STORE",
                                                          help="feature store, e.g. featurestore/features/egemaps.zarr")],
                    out: Annotated[Path, typer.Option(help="npy: root folder that gets features/<NAME>/; hdf5: the .h5 file")],
                    format: Annotated[str, typer.Option(help="npy (MER 2023 baseline layout) | hdf5")] = "npy",
                    view: Annotated[Path | None, typer.Option(help="media view whose sample ids name the files; "
                                                              "not needed for imported stores")] = MEDIA,
                    level: Annotated[str, typer.Option(help="npy: utterance (1-D per sample) | frame ([T, D])")] = "utterance",
                    name: Annotated[str, typer.Option(help="npy: FEATURE_NAME folder; default <store>-UTT / -FRA")] = ""):
    """Write a feature store's features per sample: MER 2023's features/<NAME>/<sample>.npy, or one HDF5 file
    (names, utterance matrix, frames with offsets, missing samples with reasons, encoder identity)."""
    from pipeline.store import exchange
    from pipeline.store.features import FeatureStore

    features = FeatureStore(store)
    view = view if view is not None and features.identity().keyed_by == "" else None
    if format == "npy":
        _echo(str(exchange.export_npy(features, out, view, level, name)))
    elif format == "hdf5":
        _echo(str(exchange.export_hdf5(features, out, view)))
    else:
        raise typer.BadParameter(f"format {format!r}: use npy or hdf5")


@app.command("import-features")
def import_features(folder: Annotated[Path, typer.Argument(metavar="FOLDER",
                                                            help="a features/<FEATURE_NAME>/ folder of <sample>.npy files")],
                    modality: Annotated[str, typer.Option(help="audio | visual | text")],
                    out: Annotated[Path | None, typer.Option(
                        help="feature store; default featurestore/features/<FEATURE_NAME>.zarr")] = None,
                    replace: Annotated[bool, typer.Option("--replace", help="delete and replace a store at OUT that is "
                                                          "not an import of this folder and modality")] = False):
    """Read pre-extracted features in the MER 2023 layout (1-D utterance vector or [T, D] frames per sample) into a
    feature store keyed by sample id; select it for training with train.features.<modality>: <FEATURE_NAME>.
    A re-import of the same folder replaces the store whole; a failed import leaves it as it was."""
    from pipeline.store import exchange

    _echo(exchange.import_npy(folder, modality, out or FEATURES / f"{folder.name}.zarr", replace=replace))


@app.command()
def train(manifest: Manifest, clean: Clean, corrupted: Corrupted, features: Features,
          predictions: Annotated[Path, typer.Option(help="Parquet predictions of every model on every test view")],
          metrics: Annotated[Path, typer.Option(help="JSON: cross-validation figures per run and over seeds")],
          curves: Annotated[Path, typer.Option(help="folder of per-fold training curves")],
          checkpoint: Annotated[Path, typer.Option(help="folder for the main model's fold ensemble")],
          label_lists: LabelLists,
          params: Params = Path("params.yaml")):
    """Five-fold cross-validation (MER 2023 protocol) of train.model (attention fusion or LightGBM) for every
    modality subset in train.ablation; the fold ensembles predict every test split and corrupted view, and
    the main subset's ensemble is saved as a checkpoint for `mer predict`."""
    from stages import train as stage

    report = stage.run(params, manifest=manifest, clean=clean, corrupted=corrupted, features=features,
                       predictions=predictions, metrics=metrics, curves=curves, checkpoint=checkpoint,
                       label_lists=label_lists)
    for run in report["runs"]:
        typer.echo(f"{run['subset']:>4} seed {run['seed']}: CV F1 {run['f1_weighted']:.3f} "
                   f"MSE {run.get('valence_mse', float('nan')):.3f}")


@app.command()
def pseudolabel(round_name: Annotated[str, typer.Argument(metavar="ROUND", help="a key of pseudolabel.rounds")],
                manifest: Manifest, clean: Clean, corrupted: Corrupted, features: Features, cv_metrics: CvMetrics,
                out: Annotated[Path, typer.Option(help="this round's predictions (Parquet)")],
                metrics: Annotated[Path, typer.Option(help=f"folder for {', '.join(ROUND)}")],
                params: Params = Path("params.yaml")):
    """MER-SEMI, one round: class thresholds from the start model's out-of-fold confidences (eta-quantile of
    correct predictions, pseudolabel.eta), select unlabelled test3 items above them, retrain with the selection.
    The round starts from the predictions pseudolabel.rounds names for it."""
    from stages import pseudolabel as stage

    _echo(stage.run(params, round_name=round_name, manifest=manifest, clean=clean, corrupted=corrupted,
                    features=features, cv_metrics=cv_metrics, out=out, metrics=metrics))


@app.command("semi-study")
def semi_study(out: Annotated[Path, typer.Option(help="CSV, one row per experiment and round")] = Path(METRICS, SEMI_STUDY),
               repo: Annotated[Path, typer.Option(help="project root (a git + DVC repository)")] = Path(".")):
    """Collect an eta sweep (`dvc exp run -S pseudolabel.eta=...`) into one CSV: per experiment and round, eta,
    pseudo-labels selected, their precision where true labels are known, and test F1 (MER-SEMI, MER-MULTI).
    Plot with `dvc plots show OUT -x eta -y mer_semi_f1` or `-x selected`."""
    import pandas as pd

    from pipeline.reporting.exps import dvc_exp_show, git_reader, study_frame

    frame = study_frame(dvc_exp_show(repo), git_reader(repo))
    if frame.empty:
        raise typer.BadParameter(f"no experiment has {METRICS}/{round_folder('<round>')}/{SELECTION}; run the sweep first")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    with pd.option_context("display.width", 160):
        typer.echo(frame[frame["final"]].to_string(index=False))


@app.command()
def exps(repo: Annotated[Path, typer.Option(help="project root (a git + DVC repository)")] = Path("."),
         sort_by: Annotated[str, typer.Option(help="headline figure to sort by, best first")] = "multi",
         md: Annotated[bool, typer.Option("--md", help="markdown table")] = False):
    """The experiments table: one row per experiment (`dvc exp show --json`) with the params that differ between
    them and the challenge figures of metrics/headline.json (MER-MULTI, MER-NOISE, MER-SEMI, CV)."""
    from pipeline.evaluation import EVERY_HEADLINE
    from pipeline.reporting.exps import dvc_exp_show, experiments_frame, render_experiments

    if sort_by not in EVERY_HEADLINE:
        raise typer.BadParameter(f"{sort_by!r} is not a headline figure; use one of {', '.join(EVERY_HEADLINE)}",
                                 param_hint="--sort-by")
    typer.echo(render_experiments(experiments_frame(dvc_exp_show(repo), sort_by), markdown=md), nl=False)


@app.command("plots-template")
def plots_template(repo: Annotated[Path, typer.Option(help="project root (a git + DVC repository)")] = Path(".")):
    """Make `dvc plots show` draw offline: write a page template with Vega, Vega-Lite and Vega-Embed inlined (from
    the vl-convert-python package, not a CDN) and set it as this checkout's plots.html_template (.dvc/config.local)."""
    from pipeline.reporting.dvc_plots import install_template

    typer.echo(f"dvc plots show now draws offline: template {install_template(repo)}")


@app.command()
def evaluate(manifest: Manifest,
             predictions: Annotated[Path, typer.Option(help="train's predictions (Parquet)")],
             semi_predictions: Annotated[Path, typer.Option(help="pseudolabel's folder (last round) or one predictions file")],
             cv_metrics: CvMetrics,
             out: Annotated[Path, typer.Option(help="metrics folder to write")],
             submissions: Annotated[Path, typer.Option(help="folder for the challenge-format submission files")],
             label_lists: LabelLists,
             params: Params = Path("params.yaml")):
    """Score MER-MULTI (test1), MER-NOISE (test2 on evaluate.noise_view) and MER-SEMI (test3 labelled items),
    write the ablation table, robustness curve, confusion matrix, per-class F1, valence scatter and the
    challenge-format submission files."""
    from stages import evaluate as stage

    _echo(stage.run(params, manifest=manifest, predictions=predictions, semi_predictions=semi_predictions,
                    cv_metrics=cv_metrics, out=out, submissions=submissions, label_lists=label_lists))


@app.command()
def predict(clips: Annotated[list[Path], typer.Argument(metavar="CLIP...", help="video (or audio/image) files to recognise")],
            checkpoint: Annotated[Path, typer.Option(help="checkpoint folder written by `mer train`")] = Path(
                "models/checkpoint"),
            params: Annotated[Path | None, typer.Option(help="use this params file's extract.* and encode.features "
                                                             "instead of the checkpoint's own settings")] = None,
            out: Annotated[Path | None, typer.Option(help="write a JSON array; JSON lines when the name ends in .jsonl, "
                                                          "CSV in .csv; default: print a JSON array")] = None,
            work: Annotated[Path | None, typer.Option(help="keep the media and feature stores here (reused by later "
                                                           "calls); default: a temporary folder")] = None,
            transcript: Annotated[str | None, typer.Option(help="what is said in the clip (one clip only)")] = None,
            transcripts: Annotated[Path | None, typer.Option(help="CSV with columns path,transcript (paths relative to "
                                                                  "the CSV)")] = None,
            asr: Annotated[names("pipeline.media.asr", "ASR_ENGINES") | None,
                           typer.Option(help="speech recognition for clips without a transcript; default: the "
                                             "checkpoint's")] = None,
            asr_model: Annotated[str, typer.Option(help="ASR model (extract.asr_options.model); '' = the engine's "
                                                          "default (packaged whisper-base)")] = "",
            asr_language: Annotated[str, typer.Option(help="spoken language (extract.asr_options.language: en, "
                                                             "zh, ...); '' = detected")] = "",
            allow_failures: Annotated[bool, typer.Option("--allow-failures", help="exit 0 when some (not all) clips "
                                                         "failed; each failed clip is named on stderr all the same")] = False,
            segments: Annotated[str, typer.Option(help="auto: a file longer than --max-segment is a recording, "
                                                  "predicted per utterance found by vad (and the other files with "
                                                  "it); files no longer are predicted whole, a row each. none: every "
                                                  "file whole. Or predict each file per segment: vad (speech "
                                                  "activity), fixed:SECONDS, a .csv (start,end[,text]) or an "
                                                  ".srt/.vtt file (its text is the transcript); see --timeline")] = "auto",
            timeline: Annotated[list[Path] | None, typer.Option(help="for recordings: write the timeline here, by "
                                                                "suffix .csv, .json, .srt or .vtt (an emotion subtitle "
                                                                "track) or .html (the timeline drawn); repeatable; default: "
                                                                "print JSON")] = None,
            min_segment: Annotated[float, typer.Option(help="vad segments: the shortest, seconds")] = 1.0,
            max_segment: Annotated[float, typer.Option(help="vad segments: the longest, seconds (and with "
                                                        "--segments auto, the longest file predicted whole)")] = 8.0):
    """Recognise new clips with a trained fold ensemble: extract and encode them as the checkpoint's training
    clips were, then per clip the emotion, its probabilities, the valence, the modalities used, the share of
    frames with a face and a warning for each trained modality the clip lacks. Refuses features that differ
    from the checkpoint's, naming the encoder. Names each clip that failed, and why, on stderr, and exits 1
    when any failed (unless --allow-failures; always when all failed). Warns when the checkpoint was trained
    on the generated demo corpus. --out: JSON array, JSON lines when it ends in .jsonl, CSV in .csv."""
    from pipeline.errors import InputError
    from pipeline.predict import corpus_warning, failure_lines, predict_clips, read_transcripts, write

    given = read_transcripts(transcripts) if transcripts is not None else {}
    if transcript is not None:
        if len(clips) != 1:
            raise typer.BadParameter(f"--transcript is for one clip, {len(clips)} given: use --transcripts CSV",
                                     param_hint="--transcript")
        given[clips[0].resolve()] = transcript
    speech = None if asr is None else {"asr": asr, "asr_options": {"model": asr_model, "language": asr_language}}
    if segments == "auto":
        from pipeline.recordings import is_long

        segments = "vad" if any(is_long(clip, max_segment) for clip in clips) else "none"
    if segments != "none":
        _predict_timelines(clips, segments, timeline or [], checkpoint, params, work, speech, min_segment, max_segment)
        return
    if timeline:
        raise InputError("--timeline is for recordings: pass --segments (or a file longer than --max-segment)")
    frame = predict_clips(clips, checkpoint, params, work, given, speech)
    typer.echo(write(frame, out))
    for line in [corpus_warning(checkpoint), *failure_lines(frame)]:
        if line:
            typer.echo(line, err=True)
    failed = int((frame["error"] != "").sum())
    if failed == len(frame):
        raise InputError(f"none of the {len(frame)} clips gave a prediction; each clip's reason is in its "
                         f"'error' field{f' in {out}' if out else ' above'}")
    if failed and not allow_failures:
        raise InputError(f"{failed} of {len(frame)} clips gave no prediction (named above; the others' predictions "
                         f"are {f'in {out}' if out else 'printed'}): pass --allow-failures to exit 0 all the same")


def _predict_timelines(recordings: list[Path], spec: str, outs: list[Path], checkpoint: Path, params: Path | None,
                       work: Path | None, speech: dict | None, min_segment: float, max_segment: float) -> None:
    from pipeline.errors import InputError
    from pipeline.predict import corpus_warning
    from pipeline.recordings import SegmentConfig
    from pipeline.timeline import predict_recording, records, write_timeline

    if len(recordings) != 1 and outs:
        raise InputError(f"--timeline writes one recording's timeline; {len(recordings)} recordings given")
    if not 0 < min_segment <= max_segment:
        raise InputError(f"--min-segment {min_segment} and --max-segment {max_segment}: need 0 < min <= max")
    cfg = SegmentConfig(min_seconds=min_segment, max_seconds=max_segment)
    if warning := corpus_warning(checkpoint):
        typer.echo(warning, err=True)
    for recording in recordings:
        frame = predict_recording(recording, checkpoint, spec, cfg, params, work, speech)
        for out in outs:
            typer.echo(write_timeline(frame, out, recording.name))
        if not outs:
            typer.echo(json.dumps({"recording": str(recording), "segments": records(frame)}, indent=2))
        if (frame["error"] != "").all():
            raise InputError(f"{recording}: none of its {len(frame)} segments gave a prediction; each one's reason "
                             "is in its 'error' field")


@app.command()
def doctor(params: Params = Path("params.yaml")):
    """List each dependency, each entry of every registry (corpus adapters, face detectors, ASR engines, noise
    sources, encoders, executors, model families, protocols) and each configured feature with whether it can run
    here and, if not, why."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pipeline import doctor as doc

    sections = doc.load_sections(params, params.is_file())
    table = Table("component", "ok", "details", title="mer doctor")
    rows = (doc.package_rows() + doc.runtime_rows() + doc.registry_rows(sections) + doc.whisper_rows()
            + doc.encoder_rows(sections["encode"]))
    for name, ok, why in rows:
        table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", escape(why))
    Console(width=160).print(table)


@app.command("diff-report")
def diff_report(base: Annotated[str, typer.Argument(metavar="BASE", help="git revision to compare against, e.g. origin/main")],
                repo: Annotated[Path, typer.Option(help="project root (a git + DVC repository)")] = Path("."),
                all_metrics: Annotated[bool, typer.Option("--all", help="list unchanged metrics too")] = False):
    """Markdown tables of `dvc metrics diff` (with deltas) and `dvc params diff` between BASE and the
    workspace. A BASE without metrics prints "No baseline yet" and exits 0."""
    from pipeline.reporting.diff import UnknownRevision
    from pipeline.reporting.diff import diff_report as render

    try:
        typer.echo(render(repo, base, all_metrics))
    except UnknownRevision as exc:
        raise typer.BadParameter(str(exc), param_hint="BASE") from exc


@app.command()
def report(metrics: Annotated[Path, typer.Option(help="metrics folder (evaluate, train, pseudolabel outputs)")],
           html: Annotated[Path, typer.Option(help="self-contained HTML page to write")],
           summary: Annotated[Path, typer.Option(help="markdown summary to write")],
           manifest: Annotated[Path, typer.Option(help="the manifest, for the items per split")],
           params: Params = Path("params.yaml")):
    """One HTML page (figures embedded, nothing fetched) and a markdown summary: a run header (git revision,
    corpus, items per split, params that differ from the defaults, date, machine), challenge figures beside the
    MER 2023 baseline, ablation, confusion matrix, per-class F1, robustness, pseudo-labels, training curves.
    Missing metrics files are noted on the page."""
    from stages import report as stage

    _echo(stage.run(params, metrics=metrics, html=html, summary=summary, manifest=manifest))


def main() -> None:
    app()
