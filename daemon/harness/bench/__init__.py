"""Benchmarks behind ``odar bench ...``: each prints figures and a same-run baseline."""
