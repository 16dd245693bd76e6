"""Build-time helpers for setup.py (not installed): compiler flags and the OpenMP probe."""
