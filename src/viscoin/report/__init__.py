"""Figures and pages made from interpretation results and training logs.

``plots`` (paper-style figures), ``logs`` (training curves from ``metrics.jsonl``), ``html`` (the
self-contained concept atlas ``report.html``).
"""
