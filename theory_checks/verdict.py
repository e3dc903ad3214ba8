"""The form every theory check returns: a prediction with its source, a measurement, a tolerance, a verdict.

The record is ``models.check_result.Verdict`` (re-exported here), so figures read exactly what checks write without
importing ``theory_checks``; ``models.check_result`` also says where a result is stored.
"""

from models.check_result import FAIL, INCONCLUSIVE, PASS, Verdict

__all__ = ["PASS", "FAIL", "INCONCLUSIVE", "Verdict"]
