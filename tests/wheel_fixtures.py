"""A tiny emotion-wheel folder in the organisers' file layout (wheel<N>.xlsx, synonym.xlsx, format.csv)."""

from __future__ import annotations

import csv
from pathlib import Path

from openpyxl import Workbook

# wheel1: the level-1 word "joy" lists "content" before "cheerful" (level 2 of "joy" is the alphabetically
# first: cheerful); empty cells repeat the cell above.
WHEELS = {
    "wheel1": [("joy", "content", "calm"), (None, "cheerful", "glad"), (None, None, "merry"),
               ("sadness", "lonely", "isolated"), (None, None, "sad")],
    "wheel2": [("positive", "happy", "joyful"), ("negative", "gloomy", "sad")],
}
FORMS = {"glad": "glad,gladly,gladness", "merry": "merrily", "calm": "calmly,calmness", "isolated": "isolate",
         "sad": "sadly,sadness", "happy": "happily,happiness", "joy": "joyful,joys", "serene": "serenely",
         "lonely": "loneliness"}
# run 1 (and runs 3..8): word, its synonyms; run 2 differs ("happy" and "glad" stand for each other).
RUN1 = [("glad", "happy, pleased"), ("merry", ""), ("calm", "serene"), ("isolated", ""), ("sad", "sorrowful"),
        ("joy", "")]
RUN2 = [("Happy", "glad"), ("merry", "jolly"), ("calm", ""), ("lonely", ""), ("sad", ""), ("positive", "")]


def sheet(path: Path, header: list[str], rows) -> None:
    book = Workbook()
    book.active.append(header)
    for row in rows:
        book.active.append(list(row))
    book.save(path)


def write_wheel(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in WHEELS.items():
        sheet(folder / f"{name}.xlsx", ["level1", "level2", "level3"], rows)
    runs = [RUN2 if k == 2 else RUN1 for k in range(1, 9)]
    header = [f"{kind}_run{k}" for k in range(1, 9) for kind in ("word", "synonym")]
    sheet(folder / "synonym.xlsx", header,
          [[cell for run in runs for cell in (run[i][0], run[i][1] or None)] for i in range(len(RUN1))])
    with open(folder / "format.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "format"])
        writer.writerows(FORMS.items())
    return folder
