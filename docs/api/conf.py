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
# Docstrings cannot drift silently: an undocumented or unknown parameter, a
# parameter without a description or a function without a Returns section is a
# warning, and CI builds with -W (warnings are errors).
#   PR01 a parameter is not documented      PR02 a documented parameter does not exist
#   PR07 a parameter has no description     RT01 no Returns section (for a function that returns)
#   GL08 an object in the reference has no docstring
numpydoc_validation_checks = {"PR01", "PR02", "PR07", "RT01", "GL08"}
# private helpers autodoc does not list anyway; pickling hooks document themselves
numpydoc_validation_exclude = {r"\._[a-z]", r"\.__getstate__$", r"\.__setstate__$"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
# Signatures without the annotations: the numpydoc sections give each type in words (and
# are validated above); the annotations are for type checkers and editors (cymlp ships
# py.typed), and Sphinx renders NumPy's expanded aliases unreadably
autodoc_typehints = "none"
