"""The names of the files inside the folders the stages write, declared once.

dvc.yaml names each stage's folder (`mer evaluate --out metrics`, ...) and, where DVC must know them, the
files inside; the stage that writes a file and the code that reads it use these names, and
tests/test_outputs.py checks that dvc.yaml's outs, deps, metrics and plots name the same files.
"""

METRICS = "metrics"   # evaluate's --out, the report's --metrics: `mer diff-report`, `mer exps` read revisions there

# in evaluate's --out folder
HEADLINE = "headline.json"     # the one DVC metrics file
TRACK = "track.json"
TASKS = ("mer_multi", "mer_noise", "mer_semi")   # one figures file per challenge task: task_file(task)
ABLATION = "ablation.json"
ABLATION_TABLE = "ablation.md"
ROBUSTNESS = "robustness.csv"
ROBUSTNESS_TABLE = "robustness.md"
CONFUSION = "confusion.csv"
PER_CLASS_F1 = "per_class_f1.csv"
VALENCE = "valence.csv"
EMOTION_VALENCE = "emotion_valence.csv"
CALIBRATION = "calibration.json"
SUBMISSION_FINGERPRINT = "fingerprint.json"   # beside the submission files: what made them

# in the metrics folder too, written by other stages (and a tool) and read by the report
FACES = "faces.json"               # extract's --faces
CURVES = "train_curves"            # train's --curves folder: one curve_file(fold) per fold
PSEUDOLABEL = "pseudolabel"        # one round_folder(round) per round: pseudolabel's --metrics
SEMI_STUDY = "semi_study.csv"      # `mer semi-study`'s default --out

# in a pseudolabel round's --metrics folder
SELECTION = "selection.json"
SELECTED = "selected.csv"
CLASS_BALANCE = "class_balance.csv"

CURVE_PREFIX = "fold"


def task_file(task: str) -> str:
    return f"{task}.json"


def curve_file(fold: int) -> str:
    return f"{CURVE_PREFIX}{fold}.csv"


def round_folder(round_name: str) -> str:
    """A pseudo-labelling round's folder, relative to the metrics folder."""
    return f"{PSEUDOLABEL}/{round_name}"


EVALUATE = (HEADLINE, TRACK, *map(task_file, TASKS), ABLATION, ABLATION_TABLE, ROBUSTNESS, ROBUSTNESS_TABLE,
            CONFUSION, PER_CLASS_F1, VALENCE, EMOTION_VALENCE, CALIBRATION)   # every file evaluate writes there
ROUND = (SELECTION, SELECTED, CLASS_BALANCE)   # every file a pseudolabel round writes in its --metrics folder
