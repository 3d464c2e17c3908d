"""The HTML report of an analysis result: figures (`figures`) and the self-contained page (`html`).

Both read only the analysis result dict (`seedlab.analysis.analyze`; its shape is the JSON Schema
``seedlab/analysis/schema.json``) and compute no new statistic: every number drawn or tabulated is in the result.
"""

from seedlab.report.html import write_report

__all__ = ["write_report"]
