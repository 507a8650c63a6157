"""`dvc plots show` draws offline: after `mer plots-template`, DVC's page carries Vega, Vega-Lite and
Vega-Embed inline (from the vl-convert-python package) and fetches nothing; its specs render with them."""

import json
import re
import shutil

import vl_convert
from dvc_project import REPO, run
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import MissingInput
from pipeline.reporting.dvc_plots import VEGA_LITE

ROBUSTNESS = """subset,view,snr_db,blur,f1_weighted,valence_mse,n
A,snr0,0.0,,0.25,3.5,40
A,snr10,10.0,,0.375,2.5,40
AVT,snr0,0.0,,0.5,2.0,40
AVT,snr10,10.0,,0.625,1.5,40
"""
PLOTS = {"plots": [{"per_class_f1.csv": {"template": "bar_horizontal", "x": "f1", "y": "label"}},
                   {"robustness_f1_vs_snr": {"template": "robustness", "x": "snr_db", "y": {"robustness.csv": "f1_weighted"}}}]}


def specs(page: str) -> list[dict]:
    """The Vega-Lite spec of every plot on DVC's page (`var spec = {...};` before each vegaEmbed call)."""
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(page, m.end())[0] for m in re.finditer(r"var spec = ", page)]


def test_dvc_plots_show_page_loads_nothing_and_its_plots_render(tmp_path):
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    shutil.copytree(REPO / ".dvc/plots", tmp_path / ".dvc/plots")  # the project's robustness template
    (tmp_path / "dvc.yaml").write_text(json.dumps(PLOTS))
    (tmp_path / "per_class_f1.csv").write_text("label,f1\nhappy,0.5\nsad,0.25\n")
    (tmp_path / "robustness.csv").write_text(ROBUSTNESS)

    result = CliRunner().invoke(app, ["plots-template", "--repo", str(tmp_path)])
    assert result.exit_code == 0, result.output
    run(["dvc", "plots", "show", "-o", "out"], tmp_path)
    page = (tmp_path / "out/index.html").read_text()

    assert not re.search(r"<script[^>]*\bsrc=", page) and "cdn.jsdelivr" not in page  # nothing fetched
    assert all(f"window.{name}=" in page for name in ("vega", "vegaLite", "vegaEmbed"))  # the libraries, inline
    drawn = specs(page)
    assert len(drawn) == 2
    for spec in drawn:
        svg = vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE)  # the page's Vega-Lite, offline
        assert "<path" in svg or "<rect" in svg
    assert all(name in vl_convert.vegalite_to_svg(drawn[1], vl_version=VEGA_LITE) for name in ("AVT", "snr_db"))


def test_plots_template_outside_a_dvc_project_says_so(tmp_path):
    result = CliRunner().invoke(app, ["plots-template", "--repo", str(tmp_path)])
    assert isinstance(result.exception, MissingInput) and "not a DVC project" in str(result.exception)
    assert not (tmp_path / ".dvc").exists()
