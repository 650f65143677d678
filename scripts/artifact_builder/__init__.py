"""Build-time pieces of ``scripts/build_artifacts.py``.

Only :mod:`.hhar` and :mod:`.head_spec` are free of TensorFlow (the tests import them in the
device venv); everything else needs the build venv (``scripts/setup-build.sh``).
"""
