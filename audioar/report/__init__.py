"""The run report: ``report.html`` (self-contained) and ``report.md``
(:func:`build_report`), from blocks (:mod:`.render`), evaluation tables
(:mod:`.evaluation`), traces (:mod:`.traces`) and figures (:mod:`.figures`)."""

from audioar.report.build import build_report

__all__ = ["build_report"]
