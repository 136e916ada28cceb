"""The paper's metrics, their uncertainty and the report. Imports no torch and no model code, so a
run's predictions are re-scored anywhere.

- metrics, mdd_paper  PCC, WER, PER and the standard MDD counts (Kaldi-aligned TA/FR/FA/TR); the
      paper-style P/R/F1 Table 3 is judged against (a reconstruction: mdd_paper_fit chose it among
      mdd_readings, on the recognised sequences of mdd_simulation)
- bootstrap, intervals  speaker-clustered intervals, paired comparisons and verdicts
- paper       the paper's Table 3 and how ours is set beside it
- score       stage `score`: one config's predictions -> metrics (config_metrics: beside Table 3)
- report      stage `report`: metrics/report.md in the layout of Table 3; its sections in verdicts
      (at a glance, MDD), uncertainty (intervals, comparisons) and tables; plot_data its plots
- plots       `dvc plots show` offline
"""

from .._face import lazy

_FACE = {
    "metrics": ["pcc", "wer", "per", "mdd_counts", "mdd_scores"],
    "paper": ["PAPER_TABLE3", "HEADLINE"],
    "score": ["run_score", "score_rows"],
    "report": ["run_report"],
}
__all__, __getattr__, __dir__ = lazy(__name__, _FACE)
