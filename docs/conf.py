"""Sphinx configuration of deepinv-pnn (builds offline; executes the gallery)."""

import os
import pkgutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import deepinv_pnn  # noqa: E402

project = "deepinv-pnn"
author = "deepinv-pnn developers"
release = deepinv_pnn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    "sphinxcontrib.bibtex",
]
bibtex_bibfiles = ["refs.bib"]
bibtex_default_style = "plain"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip"]
suppress_warnings = ["config.cache"]

html_theme = "pydata_sphinx_theme"
html_title = "deepinv-pnn"
html_static_path = []

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "gallery"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/demo_",
    "ignore_pattern": r"__init__\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "matplotlib_animations": True,
    "plot_gallery": os.environ.get("DEEPINV_PNN_DOCS_GALLERY", "True"),
}


def _write_api_pages() -> None:
    """One API page per module of the package, generated from the package itself, so a new
    module is documented by existing."""
    api = Path(__file__).parent / "api"
    api.mkdir(exist_ok=True)
    infos = [
        m
        for m in pkgutil.walk_packages(deepinv_pnn.__path__, prefix="deepinv_pnn.")
        if not m.name.startswith("deepinv_pnn.registrations")
    ]
    packages = {m.name for m in infos if m.ispkg}
    modules = sorted(m.name for m in infos)
    for name in modules:
        title = f"``{name}``"
        # a package page shows its docstring only: its members are documented where defined
        options = "   :no-members:\n" if name in packages else ""
        text = f"{title}\n{'=' * len(title)}\n\n.. automodule:: {name}\n{options}"
        page = api / f"{name}.rst"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
    for stale in api.glob("*.rst"):
        if stale.stem not in modules:
            stale.unlink()
    index = "API reference\n=============\n\n.. toctree::\n   :maxdepth: 1\n\n" + "".join(
        f"   {name}\n" for name in modules
    )
    (api / "index.rst").write_text(index) if not (api / "index.rst").exists() or (
        api / "index.rst"
    ).read_text() != index else None


_write_api_pages()
