"""report: one self-contained HTML page (figures embedded, nothing fetched) and a markdown summary of a run
(params: every section, for the run header's params that differ from the code's defaults).

Reads the metrics folder that extract, train, pseudolabel and evaluate write, and the manifest for the items
per split (pipeline/reporting); a missing metrics file is a note on the page, not a failure.
"""

from pathlib import Path

from pipeline.reporting.report import write_report


def run(params: Path, *, metrics: Path, html: Path, summary: Path, manifest: Path) -> dict:
    return write_report(metrics, html, summary, params=params, manifest=manifest)
