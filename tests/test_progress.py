"""Progress shows in logs: with stderr not a terminal (DVC, CI, `dvc queue logs`), training's epochs and the
executors' parts print plain lines; on a terminal, tqdm's bar."""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

TRAIN = """
import numpy as np
from pipeline.config import FusionParams
from pipeline.training import fusion
from pipeline.training.folds import CVJob, make_folds
rng = np.random.default_rng(0)
y = rng.integers(0, 6, 120)
X = {"audio": rng.normal(size=(120, 8)).astype(np.float32)}
run = fusion.FusionRun(FusionParams(epochs=20, batch_size=32, hidden=(16, 8)), threads=2, n_classes=6)
fusion.cross_validate([CVJob(X, None, y, rng.normal(size=120), make_folds(120, 4, 0, y), {}, None, 0)], run)
"""
PARTS = """
from pipeline.executors import EXECUTORS, run_tasks
results = list(run_tasks(abs, list(range(-25, 0)), EXECUTORS.make("local", {}), workers=1, desc="extract"))
assert sorted(results) == list(range(1, 26))
"""


def stderr_of(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_training_prints_a_line_per_tenth_of_its_epochs_in_a_log():
    lines = stderr_of(TRAIN).splitlines()
    # 2 fold shards (4 folds, 2 threads) x 20 epochs: a line every 4 fold-shard epochs
    counts = [int(m[1]) for line in lines if (m := re.match(r"train seed 0, 1 subset\(s\): (\d+)/40 fold-shard epoch", line))]
    assert counts == list(range(4, 41, 4)), lines
    assert "\r" not in "\n".join(lines)


def test_parts_print_lines_in_a_log():
    lines = [line for line in stderr_of(PARTS).splitlines() if line.startswith("extract:")]
    counts = (3, 6, 9, 12, 15, 18, 21, 24, 25)  # a line per 3 parts (a tenth, rounded up) and the last
    assert [line.split(",")[0] for line in lines] == [f"extract: {n}/25 part ({4 * n}%)" for n in counts]


def test_a_terminal_gets_the_bar_and_no_lines():
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    done = subprocess.run([sys.executable, "-c", PARTS], stderr=child, stdout=subprocess.DEVNULL, timeout=300)
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert done.returncode == 0
    text = out.decode()
    assert "\r" in text and "25/25" in text and "extract: 3/25 part" not in text, text
