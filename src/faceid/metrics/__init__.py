"""Verification and identification metrics: arrays in, numbers out, no I/O.

One module per concern, every public name importable from `faceid.metrics`:

- `verification`: pair similarity, ROC AUC, EER, TAR@FAR and thresholds (its docstring
  holds the conventions: acceptance is similarity > t, the measurability rule);
- `bootstrap`: identity (cluster) bootstrap intervals of AUCs, AUC differences and rates;
- `closed_set`: closed-set leave-one-out identification (top-k, CMC).
"""

from faceid.metrics.bootstrap import (
    BootstrapInterval,
    PairSample,
    bootstrap_auc,
    bootstrap_auc_difference,
    bootstrap_rates,
    percentile_interval,
    weighted_auc,
)
from faceid.metrics.closed_set import Identification, identification
from faceid.metrics.verification import (
    EqualErrorRate,
    ErrorRateAt,
    MetricError,
    OperatingPoint,
    eer,
    error_rates_at,
    false_accept_rate,
    far_unmeasurable_reason,
    log_fpr_grid,
    pair_similarity,
    roc_auc,
    roc_on_grid,
    similarity_summary,
    tar_at_far,
    threshold_accuracy,
    threshold_at_fmr,
)

__all__ = [
    "BootstrapInterval",
    "EqualErrorRate",
    "ErrorRateAt",
    "Identification",
    "MetricError",
    "OperatingPoint",
    "PairSample",
    "bootstrap_auc",
    "bootstrap_auc_difference",
    "bootstrap_rates",
    "eer",
    "error_rates_at",
    "false_accept_rate",
    "far_unmeasurable_reason",
    "identification",
    "log_fpr_grid",
    "pair_similarity",
    "percentile_interval",
    "roc_auc",
    "roc_on_grid",
    "similarity_summary",
    "tar_at_far",
    "threshold_accuracy",
    "threshold_at_fmr",
    "weighted_auc",
]
