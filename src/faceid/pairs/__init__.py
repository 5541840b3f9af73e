"""Verification pairs, training subsets and the identification protocol.

Inputs: the crop manifest (one row per dataset image; see docs/ARCHITECTURE.md).
Outputs, per task (`orig` or a CelebA attribute A):

- verification pairs from the validation (model selection) and test (reporting)
  partitions: genuine (same identity) and impostor (different identities) pairs of the
  condition types A/A, A/notA and notA/notA; `orig` has one condition, `all`;
- a training subset of the training partition, `label` = contiguous class index;
- once, the closed-set identification protocol from the test partition.

Decisions, visible downstream:

- Crop status. `missing` and `unreadable` images have no crop: they enter no pair, no
  subset and no protocol, and are counted per task x partition x side (A / notA, or `all`
  for `orig`) under `excluded` in the metrics. `fallback` crops (no detection agreed with
  the annotation, the crop taken from the dataset's own box/landmarks) enter the training
  subsets only with pairs.train.include_fallbacks (default false: a fallback may be the
  wrong face, or the whole photo squashed); in evaluation pairs.parquet has a `fallback`
  column (0, 1 or 2: how many of the pair's two images are fallback crops) so evaluation
  can slice them out, and the metrics count pairs with any fallback image per cell.
- Identity disjointness. CelebA's partitions are identity-disjoint; should a manifest not
  be, val/test images of identities that also appear in the training partition are
  excluded from pairs and protocol and counted (`excluded.identity_overlap`).
- Sampling. Per cell, every valid pair has an index in [0, available): per left image,
  its partners in the right pool form at most two contiguous ranges of the pool sorted by
  identity (its own identity's block for genuine pairs, everything but that block for
  impostor pairs; for pools paired with themselves only partners after it, so each
  unordered pair has one index). Drawing indices without replacement and decoding them
  gives pairs uniform over all valid pairs, without self-pairs, same-identity impostors or
  duplicates, and with no rejection loop. Genuine pairs are therefore uniform over pairs,
  so identities with many images weigh more; the identities per cell are reported.
  When fewer pairs exist than asked, all of them are taken and the shortfall is reported.
- Orientation. A/notA pairs have the A image as `image_a`; in A/A, notA/notA and `all`
  pairs `image_a` comes first in (identity, image) order.
- Randomness. Every cell (task x split x kind x condition), subset and the protocol draws
  from its own `numpy.random.default_rng` seeded by (seed, purpose, task, split, kind,
  condition) codes, so adding or removing a task changes no other task's output.

Modules: `manifest` (what is read and excluded), `verification` (pair sampling and the
random streams), `subsets` (training subsets), `identification` (the protocol), `build`
(all of it in one call), `outputs` (the files, laid out as faceid.pairs.files says); public
names importable from here.
"""

from faceid.pairs.build import ATTRIBUTE_SPLIT, PairsResult, build_pairs
from faceid.pairs.files import (
    ATTRIBUTE_PAIRS_FILE,
    IDENTIFICATION_FILE,
    PAIRS_FILE,
    task_train_files,
)
from faceid.pairs.identification import make_identification
from faceid.pairs.manifest import (
    EXCLUDED_STATUSES,
    TRAIN_PARTITION,
    USABLE_STATUSES,
    ManifestError,
    check_manifest,
    label_flips,
    read_manifest,
)
from faceid.pairs.outputs import detail_path, headline_counts, write_outputs, write_train_folders
from faceid.pairs.subsets import make_train_subset
from faceid.pairs.verification import ALL_CONDITION, CONDITIONS, EVAL_SPLITS, KINDS, sample_pairs

__all__ = [
    "ALL_CONDITION",
    "ATTRIBUTE_PAIRS_FILE",
    "ATTRIBUTE_SPLIT",
    "CONDITIONS",
    "EVAL_SPLITS",
    "EXCLUDED_STATUSES",
    "IDENTIFICATION_FILE",
    "KINDS",
    "PAIRS_FILE",
    "TRAIN_PARTITION",
    "USABLE_STATUSES",
    "ManifestError",
    "PairsResult",
    "build_pairs",
    "check_manifest",
    "detail_path",
    "headline_counts",
    "label_flips",
    "make_identification",
    "make_train_subset",
    "read_manifest",
    "sample_pairs",
    "task_train_files",
    "write_outputs",
    "write_train_folders",
]
