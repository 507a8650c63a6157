"""Ctrl-C (SIGINT) and SIGTERM at every stage, as a user at a terminal or a scheduler sends them: each stage
command, started on a small project built by a real `dvc repro`, is interrupted once it is doing real work.
It must stop within seconds with a non-zero status and a message saying what a rerun does, leave only whole
outputs (store parts committed or absent), and a rerun must finish the job."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from dvc_project import project_copy, run
from test_stage_paths import dvc_commands

from pipeline import interrupts
from pipeline.store.features import FeatureStore
from pipeline.store.media import MediaStore

BIN = Path(sys.executable).parent
SMALL = {
    "demo": {"n_train": 40, "n_test1": 8, "n_test2": 8, "n_test3_labelled": 8, "n_unlabelled": 24},
    "corrupt": {"robustness_snr_db": [0], "robustness_blur": []},
    "encode": {"features": {"egemaps": {"encoder": "egemaps", "options": {}}}, "items_per_part": 2},
    "train": {"features": {"audio": "egemaps"}, "fusion": {"epochs": 30}, "ablation": ["A"]},
    "pseudolabel": {"rounds": {"r1": "models/predictions.parquet"}, "eta": 0.0, "max_per_labelled": 0},
    "extract": {"workers": 1, "clips_per_part": 2},
}
PROMPT = 20   # seconds a stage may take to stop after the signal (a loaded 2-core machine; it takes about 1)


def sigint_in(seconds: float) -> None:
    """SIGINT to this process in `seconds`, as a Ctrl-C would arrive."""
    threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT)).start()


def test_an_interrupt_inside_opensmile_stops_the_encoder():
    """openSMILE calls back into Python from C, where ctypes drops a KeyboardInterrupt and the item comes out
    NaN, as if it had failed: the stop flag must end the encoding anyway."""
    from pipeline.encoders import make_encoder
    from pipeline.media.decode import SAMPLE_RATE

    encoder = make_encoder("egemaps", {}, batch_size=1)
    waves = [0.1 * np.random.default_rng(i).standard_normal(20 * SAMPLE_RATE).astype(np.float32) for i in range(8)]
    with interrupts.handled(), pytest.raises(interrupts.Interrupted):
        sigint_in(0.3)   # lands inside openSMILE's C processing: nearly all of an item's time
        encoder.encode(waves)


def test_fold_shard_threads_stop_at_the_flag_alone():
    """Fold groups train in child processes (threads where the OS does not fork, which a KeyboardInterrupt
    never reaches): they must stop when the flag is set. Here the main thread only sets it (deferred), so the
    stop comes from the shards' own checks, and children, which this signal (to this process alone) does not
    reach, are killed."""
    from test_cv import synthetic

    from pipeline.config import FusionParams
    from pipeline.training import fusion
    from pipeline.training.folds import CVJob, make_folds

    X, y, v = synthetic(240)
    job = CVJob(X, None, y, v, make_folds(240, 6, 0, y))
    run = fusion.FusionRun(FusionParams(epochs=2000, batch_size=32, hidden=(32, 16)), threads=2,  # 2 groups, 2 threads
                            n_classes=6)
    with interrupts.handled(), pytest.raises(interrupts.Interrupted), interrupts.deferred():
        sigint_in(0.5)
        with pytest.raises(interrupts.Interrupted):   # from the threads, long before 2000 epochs
            fusion.cross_validate([job], run)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    work = project_copy(tmp_path_factory.mktemp("project"), SMALL)
    run(["dvc", "repro"], work)
    return work


def command(stage: str) -> list[str]:
    """The stage's `mer` arguments as dvc.yaml gives them (the one feature, the one round)."""
    args = ["mer", *dvc_commands()[stage.split("@")[0]]]
    return [a.replace("${key}", stage.split("@")[1]) if "@" in stage else a for a in args]


class Running:
    """`mer ...` in its own session with stderr on a terminal (so progress bars draw, as for a user)."""

    def __init__(self, cwd: Path, args: list[str], params: dict | None = None):
        if params:
            base = yaml.safe_load((cwd / "params.yaml").read_text())
            for section, values in params.items():
                base[section].update(values)
            (cwd / "params.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))   # tqdm draws nothing at 0 columns
        env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        os.close(slave)
        self.master, self.err = master, ""

    def _read(self, timeout: float = 0.05) -> None:
        while select.select([self.master], [], [], timeout)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:   # the process is gone and the terminal closed
                return
            if not chunk:
                return
            self.err += chunk.decode(errors="replace")
            timeout = 0

    def wait_for(self, ready, what: str, limit: float = 300) -> None:
        """Until ready() (or the text `ready` reaches stderr) while the command still runs."""
        check = (lambda: re.search(ready, self.err)) if isinstance(ready, str) else ready
        deadline = time.monotonic() + limit
        while not check():
            self._read()
            assert self.proc.poll() is None, f"finished before {what}:\n{self.err[-3000:]}"
            if time.monotonic() > deadline:
                os.killpg(self.proc.pid, signal.SIGKILL)
                pytest.fail(f"no {what} within {limit} s:\n{self.err[-3000:]}")

    def interrupt(self, sig=signal.SIGINT, group: bool = False) -> float:
        """Send `sig` (to the whole session, as a terminal's Ctrl-C, when `group`); seconds until it exited."""
        sent = time.monotonic()
        os.killpg(self.proc.pid, sig) if group else self.proc.send_signal(sig)
        while self.proc.poll() is None:
            self._read()
            if time.monotonic() - sent > 120:
                os.killpg(self.proc.pid, signal.SIGKILL)
                pytest.fail(f"still running 120 s after {sig!r}:\n{self.err[-3000:]}")
        self._read()
        os.close(self.master)
        return time.monotonic() - sent


def stopped(running: Running, sig=signal.SIGINT, **how) -> str:
    took = running.interrupt(sig, **how)
    err = running.err
    assert took < PROMPT, f"took {took:.1f} s to stop:\n{err[-3000:]}"
    assert running.proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return err


def copy(project: Path, tmp_path: Path, *remove: str) -> Path:
    work = Path(shutil.copytree(project, tmp_path / "work", symlinks=True))
    for path in remove:
        shutil.rmtree(work / path) if (work / path).is_dir() else (work / path).unlink()
    return work


def mer(work: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def committed(store: Path) -> int:
    return len(list(store.glob("**/index/*.parquet")))


def only_whole_parts(store: Path) -> None:
    """Every item of every committed part reads back; what is not committed is never read."""
    for index in store.glob("**/index"):
        root = index.parent
        if (root / FeatureStore.META).is_file():
            FeatureStore(root).matrix()
        else:
            media = MediaStore(root)
            for _, row in media.index().iterrows():
                media.load(row)


RESUMES = "run the same command again to resume"


@pytest.mark.slow
def test_extract_stops_and_resumes(project, tmp_path):
    work = copy(project, tmp_path, "featurestore/media.zarr")
    store = work / "featurestore/media.zarr"
    running = Running(work, command("extract"))
    running.wait_for(lambda: committed(store) >= 1, "committed part")
    err = stopped(running, signal.SIGTERM)
    assert "mer extract: interrupted (SIGTERM)" in err and RESUMES in err
    only_whole_parts(store)
    kept = len(MediaStore(store).index())
    done = json.loads(mer(work, command("extract")).stdout)
    assert done["reused"] == kept and done["processed"] > 0


@pytest.mark.slow
def test_corrupt_stops_and_resumes(project, tmp_path):
    work = copy(project, tmp_path, "featurestore/corrupted.zarr")
    store = work / "featurestore/corrupted.zarr"
    running = Running(work, command("corrupt"), {"extract": {"clips_per_part": 1}})
    running.wait_for(lambda: committed(store) >= 1, "committed part")
    err = stopped(running)
    assert "mer corrupt: interrupted (SIGINT)" in err and RESUMES in err
    only_whole_parts(store)
    mer(work, command("corrupt"))


def interrupted_encode(work: Path, running: Running, under_dvc: bool = False) -> str:
    """An openSMILE encode interrupted mid-run: no item the interrupt hit is stored as failed."""
    store = work / "featurestore/features/egemaps.zarr"
    running.wait_for(lambda: committed(store) >= 1, "committed part")
    time.sleep(0.3)   # inside openSMILE's processing, where a bare KeyboardInterrupt was swallowed
    if under_dvc:     # a terminal's Ctrl-C reaches dvc and the stage's command
        running.interrupt(group=True)
        err = running.err
    else:
        err = stopped(running)
    only_whole_parts(store)
    index = FeatureStore(store).index()
    assert (index["status"] == "ok").all(), index[index["status"] != "ok"]
    return err


@pytest.mark.slow
def test_encode_stops_and_a_rerun_encodes_the_interrupted_item(project, tmp_path):
    work = copy(project, tmp_path, "featurestore/features/egemaps.zarr")
    args = command("encode@egemaps")
    err = interrupted_encode(work, Running(work, args))
    assert "mer encode: interrupted (SIGINT)" in err and RESUMES in err
    before = len(FeatureStore(work / "featurestore/features/egemaps.zarr").index())
    done = json.loads(mer(work, args).stdout)
    index = FeatureStore(work / "featurestore/features/egemaps.zarr").index()
    assert done["failed"] == 0 and done["encoded"] == len(index) - before > 0
    assert (index["status"] == "ok").all()


@pytest.mark.slow
def test_encode_under_dvc_repro_stops_on_ctrl_c(project, tmp_path):
    work = copy(project, tmp_path, "featurestore/features/egemaps.zarr")
    running = Running(work, ["dvc", "repro", "-s", "encode@egemaps"])
    err = interrupted_encode(work, running, under_dvc=True)
    assert running.proc.returncode != 0
    assert "mer encode: interrupted (SIGINT)" in err and RESUMES in err
    run(["dvc", "repro", "-s", "encode@egemaps"], work)
    assert (FeatureStore(work / "featurestore/features/egemaps.zarr").index()["status"] == "ok").all()


TRAIN_OUTPUTS = ("models/predictions.parquet", "metrics/cv.json", "metrics/train_curves", "models/checkpoint")


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["train", "pseudolabel@r1"])
def test_training_stops_within_seconds_in_every_fold_shard(project, tmp_path, stage):
    outputs = TRAIN_OUTPUTS if stage == "train" else ("models/pseudolabel", "metrics/pseudolabel")
    work = copy(project, tmp_path, *outputs)
    # many epochs, folds in 2 groups trained side by side: uninterrupted it would run for many minutes
    running = Running(work, command(stage), {"train": {"fusion": {"epochs": 100000}}})
    running.wait_for(r"train seed 0.*\| *[1-9]\d*/", "trained epoch")
    err = stopped(running, group=True)
    assert f"mer {stage.split('@')[0]}: interrupted (SIGINT). Its outputs are written whole" in err
    assert "training starts over" in err
    assert not any((work / out).exists() and any((work / out).iterdir()) if (work / out).is_dir() else
                   (work / out).exists() for out in outputs), "an interrupted training wrote outputs"


# Stages of a few seconds: what they write, and the sign that their work has begun (a progress bar, or the
# library their work needs loaded into the process).
SHORT = {"prepare": (("data/manifest.parquet", "data/rejects.csv"), r"prepare: \d+item"),
         "evaluate": (("models/submissions", "metrics/headline.json", "metrics/mer_multi.json",
                       "metrics/robustness.csv"), "sklearn"),
         "report": (("reports",), "ft2font")}


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(SHORT))
def test_short_stages_stop_and_rerun(project, tmp_path, stage):
    args, (outputs, begun) = command(stage), SHORT[stage]
    work = copy(project, tmp_path, *outputs)
    running = Running(work, args)
    maps = Path(f"/proc/{running.proc.pid}/maps")
    running.wait_for(begun if stage == "prepare" else lambda: begun in maps.read_text(), "work begun", limit=120)
    err = stopped(running)
    assert f"mer {stage}: interrupted (SIGINT). Nothing half-written is kept" in err
    for path in outputs:   # whatever was written reads whole
        for file in [work / path] if (work / path).is_file() else (work / path).rglob("*"):
            if file.suffix == ".parquet":
                pd.read_parquet(file)
            elif file.suffix == ".json":
                json.loads(file.read_text())
            elif file.suffix == ".csv":
                pd.read_csv(file)
    mer(work, args)
