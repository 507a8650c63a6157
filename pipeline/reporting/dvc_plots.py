"""`dvc plots show` offline: DVC's page loads Vega, Vega-Lite and Vega-Embed from a CDN and draws nothing
without the network. `mer plots-template` writes a page template with the three libraries inlined, taken
from the vl-convert-python package (which bundles them), and makes it this checkout's `plots.html_template`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.errors import MissingInput

VEGA_LITE = "5.21"   # the Vega-Lite major DVC's templates and .dvc/plots/*.json are written for (schema v5)
TEMPLATE = "tmp/plots-offline.html"  # under .dvc/, git-ignored: built per checkout from the installed package
# DVC fills {plot_divs}; without a {scripts} placeholder it adds no CDN <script> tags.
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- Vega {vega}, Vega-Lite {vega_lite}, Vega-Embed {embed}, from vl-convert-python {vl_convert} -->
    <script type="text/javascript">{bundle}</script>
    <style>table {{ border-spacing: 15px; }}</style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def offline_page() -> str:
    """DVC's page template with the Vega libraries inlined."""
    from importlib.metadata import version

    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    return PAGE.format(vega=vl_convert.get_vega_version(), vega_lite=VEGA_LITE, embed=vl_convert.get_vega_embed_version(),
                       vl_convert=version("vl-convert-python"), bundle=bundle)


def install_template(repo: Path) -> Path:
    """Write the offline template into repo/.dvc and set it as the checkout's (local) plots.html_template."""
    dvc_dir = repo / ".dvc"
    if not dvc_dir.is_dir():
        raise MissingInput(f"{repo.resolve()}: not a DVC project (no .dvc folder): run this in the project root")
    path = dvc_dir / TEMPLATE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(offline_page(), encoding="utf-8")
    # the DVC installed beside this interpreter; --local: .dvc/config.local, never committed
    subprocess.run([sys.executable, "-m", "dvc", "config", "--local", "plots.html_template", TEMPLATE], cwd=repo,
                   check=True, capture_output=True, text=True)
    return path
