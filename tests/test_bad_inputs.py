"""Bad input and faults, as a careful user (or an attacker) meets them: each case asserts the message or
the recorded reason a user acts on, and that nothing else was lost. Commands run as real `mer`
subprocesses where the exit code and what reaches the terminal are the point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from media_fixtures import write_clip
from pipeline.store.lock import lock_paths, store_lock

BIN = Path(sys.executable).parent


def mer(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed `mer` command; never raises on a non-zero exit."""
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"} | (env or {})
    return subprocess.run([str(BIN / "mer"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def params_file(path: Path, sections: dict) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


# --- errors a user can act on -------------------------------------------------------------------------

def test_expected_error_prints_its_message_without_traceback(tmp_path):
    params = params_file(tmp_path / "params.yaml", {"train": {"lrr": 0.1}})
    done = mer("train", "--params", str(params))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "mer train: error: train: unknown key(s) ['lrr']" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3


@pytest.mark.parametrize("how", [("--debug",), ()])
def test_debug_shows_the_traceback(tmp_path, how):
    params = params_file(tmp_path / "params.yaml", {"train": {"lrr": 0.1}})
    done = mer(*how, "train", "--params", str(params), env={} if how else {"MER_DEBUG": "1"})
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "ConfigError: train: unknown key(s)" in done.stderr


def test_missing_params_file_names_it(tmp_path):
    done = mer("prepare", "--params", str(tmp_path / "nope.yaml"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{tmp_path / 'nope.yaml'}: no such params file" in done.stderr


def test_every_user_facing_error_has_one_root():
    from pipeline.config import ConfigError
    from pipeline.datasets.prepare import TooManyRejects
    from pipeline.encoders.base import EncoderUnavailable
    from pipeline.errors import MerError, StoreLocked
    from pipeline.failures import TooManyFailures
    from pipeline.media.decode import MediaError
    from pipeline.reporting.diff import UnknownRevision
    from pipeline.training.checkpoint import FeatureMismatch

    for cls in (ConfigError, TooManyRejects, EncoderUnavailable, StoreLocked, TooManyFailures, MediaError,
                UnknownRevision, FeatureMismatch):
        assert issubclass(cls, MerError), cls
    assert issubclass(ConfigError, ValueError) and issubclass(TooManyFailures, RuntimeError)  # old catches hold


# --- one writer per store -----------------------------------------------------------------------------

HOLD = """
import sys, time
from pipeline.store.lock import store_lock
with store_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_lock(store: Path) -> subprocess.Popen:
    """Another process holding the store's writer lock."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(store)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_fails_at_once_naming_store_and_holder(tmp_path):
    store = tmp_path / "media.zarr"
    holder = hold_lock(store)
    try:
        params = params_file(tmp_path / "params.yaml", {"prepare": {"root": str(tmp_path)}})
        start = time.monotonic()
        done = mer("extract", "--params", str(params), "--manifest", str(tmp_path / "none.parquet"),
                   "--store", str(store), "--failures", str(tmp_path / "f.jsonl"))
        assert time.monotonic() - start < 30          # it does not wait for the holder
        assert done.returncode == 75, done.stderr
        assert "Traceback" not in done.stderr
        assert str(store) in done.stderr and f"PID {holder.pid}" in done.stderr
        assert not store.exists()                     # the refused writer touched nothing
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_writer_is_taken_over(tmp_path):
    store = tmp_path / "media.zarr"
    holder = hold_lock(store)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_paths(store)[1].exists()              # its holder file is left behind, as after kill -9
    with store_lock(store):
        assert json.loads(lock_paths(store)[1].read_text())["pid"] == os.getpid()
    assert not lock_paths(store)[1].exists()
