"""Verification and identification metrics: arrays in, numbers out, no I/O.

One module per concern, every public name importable from `faceid.evaluate.metrics`:

- `verification`: pair similarity, ROC AUC, EER, TAR@FAR and thresholds (its docstring
  holds the conventions: acceptance is similarity > t, the measurability rule);
- `bootstrap`: identity (cluster) bootstrap intervals of AUCs, AUC differences and rates;
- `closed_set`: closed-set leave-one-out identification (top-k, CMC);
- `inference`: paired differences with p-values, Benjamini–Hochberg, the sample-size
  rule, an operating point with its false-match support, ratio and top-k intervals.
"""

from faceid.evaluate.metrics.bootstrap import (
    BootstrapInterval,
    PairSample,
    bootstrap_auc,
    bootstrap_auc_difference,
    bootstrap_rates,
    percentile_interval,
    weighted_auc,
)
from faceid.evaluate.metrics.closed_set import Identification, identification
from faceid.evaluate.metrics.inference import (
    Difference,
    OperatingPointEstimate,
    Support,
    benjamini_hochberg,
    bootstrap_p_value,
    bootstrap_top_k,
    cell_support,
    det_curve,
    operating_point,
    paired_difference,
    ratio_interval,
    supported_fmr,
)
from faceid.evaluate.metrics.verification import (
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
    "Difference",
    "EqualErrorRate",
    "ErrorRateAt",
    "Identification",
    "MetricError",
    "OperatingPoint",
    "OperatingPointEstimate",
    "PairSample",
    "Support",
    "benjamini_hochberg",
    "bootstrap_auc",
    "bootstrap_auc_difference",
    "bootstrap_p_value",
    "bootstrap_rates",
    "bootstrap_top_k",
    "cell_support",
    "det_curve",
    "eer",
    "error_rates_at",
    "false_accept_rate",
    "far_unmeasurable_reason",
    "identification",
    "log_fpr_grid",
    "operating_point",
    "pair_similarity",
    "paired_difference",
    "percentile_interval",
    "ratio_interval",
    "roc_auc",
    "roc_on_grid",
    "similarity_summary",
    "supported_fmr",
    "tar_at_far",
    "threshold_accuracy",
    "threshold_at_fmr",
    "weighted_auc",
]
