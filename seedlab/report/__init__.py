"""The HTML report of an analysis result: figures (`figures`) and the self-contained page (`html`).

Both read only the analysis result dict (`seedlab.analysis.analyze`, schema ``seedlab.analysis/1``) and
compute no new statistic: every number drawn or tabulated is in the result.
"""

from seedlab.report.html import write_report

__all__ = ["write_report"]
