"""Sphinx configuration for cymlp's API reference.

Build it (warnings are errors, as in CI):

    pip install '.[docs]'
    python -m sphinx -W -b html docs/api /tmp/cymlp-api

then open /tmp/cymlp-api/index.html.
"""

import sys
from pathlib import Path

# document the checkout this file belongs to (the compiled extension is not needed)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import cymlp

project = "cymlp"
author = "the cymlp authors"
copyright = "the cymlp authors, BSD-3-Clause"
release = version = cymlp.__version__

extensions = ["sphinx.ext.autodoc", "numpydoc"]
autodoc_member_order = "bysource"
numpydoc_show_class_members = False      # autodoc lists the members; no autosummary stubs
numpydoc_xref_param_type = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
