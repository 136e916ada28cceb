"""The paper's metrics, their uncertainty and the report. Imports no torch and no model code, so a
run's predictions are re-scored anywhere.

- metrics      PCC, WER, PER and MDD counts (Kaldi-aligned TA/FR/FA/TR)
- mdd_paper    the paper-style MDD precision/recall/F1 Table 3 is judged against (a reconstruction;
               mdd_paper_fit is the fit of Table 3 that chose it, among mdd_readings, on the
               recognised sequences mdd_simulation makes)
- bootstrap    speaker-clustered bootstrap intervals
- intervals    intervals, paired comparisons and verdicts of scored checkpoints
- paper        the paper's Table 3 and how ours is set beside it
- score        stage `score`: one config's predictions -> metrics
- config_metrics  metrics/<config>.json and its headline: scores set beside Table 3
- report       stage `report`: metrics/report.md in the layout of Table 3
- verdicts     the report's verdicts at a glance and its MDD section
- uncertainty  the report's sections on intervals and comparisons
- plot_data    the report's plot data (ours vs the paper, training loss)
- tables       the rows and pipe tables those sections share
- plots        `dvc plots show` offline
"""

from .._face import lazy

_FACE = {
    "metrics": ["pcc", "wer", "per", "mdd_counts", "mdd_scores"],
    "paper": ["PAPER_TABLE3", "HEADLINE"],
    "score": ["run_score", "score_rows"],
    "report": ["run_report"],
}
__all__, __getattr__, __dir__ = lazy(__name__, _FACE)
