"""Schema of params.yaml's `evaluate` section: metrics computed from embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from faceid.config.engine import ParamsError, check_at_least
from faceid.data.celeba import ATTRIBUTE_NAMES

__all__ = ["BootstrapParams", "EvaluateParams", "IdentificationScoringParams"]


@dataclass(frozen=True)
class BootstrapParams:
    """Cluster bootstrap of the AUC over identities."""

    n_boot: int  # replicates per cell interval, map ΔAUC and DET band
    n_boot_conclusions: int  # replicates of paired comparisons, the operating point, top-k
    seed: int  # numpy.random.default_rng(seed), one generator per evaluation
    level: float  # two-sided percentile interval


@dataclass(frozen=True)
class IdentificationScoringParams:
    """Closed-set leave-one-out identification on data/pairs/identification.parquet."""

    score: Literal["max", "mean"]  # an identity's score from its other images
    ks: tuple[int, ...]  # top-k accuracies reported
    cmc_max_rank: int  # CMC curve length (capped at the gallery size)


@dataclass(frozen=True)
class EvaluateParams:
    """Verification and identification metrics computed from embeddings."""

    SECTION: ClassVar[str] = "evaluate"

    split: Literal["val", "test"]  # pairs.parquet split evaluated
    # the study's threshold accuracy (genuine similarity > t) and FAR at the same t
    thresholds: tuple[float, ...]
    fars: tuple[float, ...]  # TAR@FAR operating points per cell
    # one global threshold at this FMR on the pooled impostors of task `orig`
    global_fmr: float
    global_task: str  # task whose impostors set the global threshold
    bootstrap: BootstrapParams
    # the sample-size rule: cells below it are shown, marked, and never ranked or concluded from
    min_genuine_pairs: int
    min_identities: int  # people contributing genuine pairs
    # rule of 30: a threshold or a rate ratio rests on at least this many errors
    min_false_matches: int
    fdr: float  # Benjamini–Hochberg false-discovery rate over the map's attributes
    identification: IdentificationScoringParams
    fpr_grid_size: int  # ROC points per cell, log-spaced FPR
    fpr_grid_min: float  # lowest FPR of the grid
    # embedding step: average each image's embedding with its horizontal flip's
    flip_average: bool
    # the robustness map: evaluation-only A/A, A/notA, notA/notA pairs of the test split
    # per attribute (built by the pairs stage, separate from the training tasks);
    # `all` = CelebA's 40, a list = those, [] = no map
    attributes: Literal["all"] | tuple[str, ...]
    # demographic differentials (FNMR per group, FMR within and across groups at the
    # global threshold, NIST FRVT Part 3 style); each also gets its attribute pairs
    groups: tuple[str, ...]
    # how the evaluate stages embed (not training's: changing them re-runs evaluations only)
    device: Literal["auto", "cpu", "cuda"]  # auto = cuda when torch sees a GPU, else cpu
    batch_size: int  # crops per forward pass
    # summarize's paired comparisons run in this many processes (0 = one per CPU core);
    # each (model, start) has its own random stream, so any number gives the same bytes;
    # unless 1, the figures are drawn meanwhile in as many more processes
    processes: int

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Attributes that get evaluation-only pairs: the map's, then the groups not in it."""
        listed = ATTRIBUTE_NAMES if self.attributes == "all" else self.attributes
        return (*listed, *(g for g in self.groups if g not in listed))

    def __post_init__(self) -> None:
        check_at_least("evaluate.processes", self.processes, 0)
        for key, names in (("attributes", () if self.attributes == "all" else self.attributes),
                           ("groups", self.groups)):  # fmt: skip
            for i, name in enumerate(names):
                if name not in ATTRIBUTE_NAMES:
                    raise ParamsError(
                        f"evaluate.{key}[{i}]: unknown attribute {name!r}; valid: all (attributes only) or "
                        f"{', '.join(ATTRIBUTE_NAMES)} (case-sensitive, as in list_attr_celeba.txt)"
                    )
            if len(set(names)) != len(names):
                raise ParamsError(f"evaluate.{key}: an attribute is listed twice; list each once")
        for name, rates in (("fars", self.fars), ("global_fmr", (self.global_fmr,)),
                            ("fpr_grid_min", (self.fpr_grid_min,))):  # fmt: skip
            if any(not 0.0 < r < 1.0 for r in rates):
                raise ParamsError(f"evaluate.{name}: expected rates in (0, 1), got {rates}")
        if any(not -1.0 <= t <= 1.0 for t in self.thresholds):
            raise ParamsError(
                f"evaluate.thresholds: expected cosine similarities in [-1, 1], got {self.thresholds}"
            )
        for key in ("min_genuine_pairs", "min_identities", "min_false_matches"):
            if getattr(self, key) < 1:
                raise ParamsError(f"evaluate.{key}: expected a count >= 1, got {getattr(self, key)}")
        if not 0.0 < self.fdr < 1.0:
            raise ParamsError(f"evaluate.fdr: expected a rate in (0, 1), got {self.fdr}")
        if self.fpr_grid_size < 2:
            raise ParamsError(f"evaluate.fpr_grid_size: expected >= 2, got {self.fpr_grid_size}")
        if min(self.bootstrap.n_boot, self.bootstrap.n_boot_conclusions) < 2 or not 0.0 < self.bootstrap.level < 1.0:
            raise ParamsError(
                "evaluate.bootstrap: expected n_boot and n_boot_conclusions >= 2 and 0 < level < 1, got "
                f"{self.bootstrap.n_boot}, {self.bootstrap.n_boot_conclusions} and {self.bootstrap.level}"
            )
        if any(k < 1 for k in self.identification.ks) or self.identification.cmc_max_rank < 1:
            raise ParamsError(
                "evaluate.identification: expected ks and cmc_max_rank >= 1, got "
                f"{self.identification.ks} and {self.identification.cmc_max_rank}"
            )
        if self.batch_size < 1:
            raise ParamsError(f"evaluate.batch_size: expected an integer >= 1, got {self.batch_size!r}")
