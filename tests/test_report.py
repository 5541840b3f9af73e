import copy
import json

import numpy as np
import pandas as pd
import pytest

from faceid.config import BootstrapParams, EvaluateParams
from faceid.evaluate import POOLED, evaluate_embeddings, json_ready
from faceid.report import (
    ModelName,
    ReportError,
    accuracy_table,
    finetune_table,
    flatten_summary,
    identification_table,
    parse_model_name,
    write_report,
)

TASKS = {"orig", "eyeglasses", "wearing-hat"}


def _evaluation(seed=0):
    """One real evaluation dict from a tiny world with identity structure."""
    rng = np.random.default_rng(seed)
    n_id, per, dim = 20, 4, 16
    ids = np.repeat(np.arange(n_id), per)
    emb = rng.normal(size=(n_id, dim))[ids] + 0.7 * rng.normal(size=(n_id * per, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    names = [f"{i:06d}.jpg" for i in range(n_id * per)]
    records = []
    for task, condition, ka, kb in [("orig", "all", 0, 1), ("eyeglasses", "A/A", 1, 2),
                                    ("eyeglasses", "notA/notA", 2, 3), ("wearing-hat", "A/A", 0, 3)]:  # fmt: skip
        for i in range(n_id):
            j = (i + 1) % n_id
            records.append((task, "test", "genuine", condition, names[i * per + ka], names[i * per + kb], i, i))
            records.append((task, "test", "impostor", condition, names[i * per + ka], names[j * per + kb], i, j))
    pairs = pd.DataFrame(records, columns=["task", "split", "kind", "condition", "image_a", "image_b",
                                           "identity_a", "identity_b"])  # fmt: skip
    manifest = pd.DataFrame({"image": names, "status": "detected"})
    protocol = pd.DataFrame({"image": names, "identity": ids})
    params = EvaluateParams(fars=(1e-3, 0.1), global_fmr=0.1, fpr_grid_size=6, fpr_grid_min=1e-2,
                            bootstrap=BootstrapParams(n_boot=20))  # fmt: skip
    return evaluate_embeddings(emb.astype(np.float32), names, pairs, manifest, protocol, params)


@pytest.fixture(scope="module")
def base():
    return _evaluation()


def _with_auc(evaluation, aucs: dict):
    out = copy.deepcopy(evaluation)
    for task, auc in aucs.items():
        out["tasks"][task][POOLED]["auc"] = auc
    return out


@pytest.fixture(scope="module")
def evaluations(base):
    return {
        "pretrained-resnet50": _with_auc(base, {"eyeglasses": 0.8, "orig": 0.95}),
        "eyeglasses-resnet50": _with_auc(base, {"eyeglasses": 0.9, "orig": 0.94}),
        "untrained-inception_resnet_v1": _with_auc(base, {"eyeglasses": 0.6}),
        "wearing-hat-inception_resnet_v1": base,
    }


def test_parse_model_name():
    assert parse_model_name("pretrained-resnet50", TASKS) == ModelName("pretrained-resnet50", "resnet50", None, "pretrained")
    assert parse_model_name("wearing-hat-resnet50", TASKS) == ModelName("wearing-hat-resnet50", "resnet50", "wearing-hat", None)
    with pytest.raises(ReportError, match=r"model 'resnet50': expected 'pretrained-<backbone>'"):
        parse_model_name("resnet50", TASKS)


def test_flatten_summary_keys_and_values(evaluations, base):
    flat = flatten_summary(evaluations)
    assert list(flat) == sorted(flat)
    assert flat["pretrained-resnet50.eyeglasses.pooled.auc"] == 0.8
    assert flat["eyeglasses-resnet50.eyeglasses.pooled.auc"] == 0.9
    cell = base["tasks"]["eyeglasses"]["A/A"]
    assert flat["pretrained-resnet50.eyeglasses.A/A.accuracy@0.7"] == cell["threshold_accuracy"]["0.7"]
    assert flat["pretrained-resnet50.eyeglasses.A/A.far@0.7"] == cell["false_accept_rate"]["0.7"]
    assert flat["pretrained-resnet50.eyeglasses.A/A.n_genuine"] == 20
    assert flat["pretrained-resnet50.orig.all.tar@far=0.001"] is None  # unmeasurable on 20 impostors
    assert flat["pretrained-resnet50.orig.all.tar@far=0.1"] == cell_tar(base, "orig", "all", "0.1")
    assert flat["pretrained-resnet50.identification.top1"] == base["identification"]["top_k"]["1"]
    json.dumps(flat, allow_nan=False)


def cell_tar(evaluation, task, condition, far):
    return evaluation["tasks"][task][condition]["tar_at_far"][far]["tar"]


def test_finetune_table_compares_start_and_tuned_per_backbone(evaluations):
    table = finetune_table(evaluations)
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line for line in table.splitlines()[2:]}
    row = rows[("eyeglasses", "resnet50", "pretrained-resnet50")]
    assert "0.800 → 0.900 (+0.100)" in row and "0.950 → 0.940 (-0.010)" in row
    # no eyeglasses model for inception_resnet_v1: the 'after' side is missing
    assert "0.600 → — (—)" in rows[("eyeglasses", "inception_resnet_v1", "untrained-inception_resnet_v1")]
    assert ("wearing-hat", "resnet50", "pretrained-resnet50") in rows


def test_accuracy_table_rows_and_unmeasurable_marks(evaluations):
    table = accuracy_table({"pretrained-resnet50": evaluations["pretrained-resnet50"]})
    lines = table.splitlines()
    assert lines[0].startswith("| model | task | condition | acc > 0.6 (FAR) | acc > 0.7 (FAR) | acc > 0.8 (FAR)")
    conditions = [tuple(c.strip() for c in line.split("|")[2:4]) for line in lines[2:]]
    # orig and wearing-hat have one condition: no repeated pooled row
    assert ("orig", "pooled") not in conditions and ("wearing-hat", "pooled") not in conditions
    assert ("eyeglasses", "pooled") in conditions and len(conditions) == 5
    tar_column = lines[0].split("|").index(" TAR@FAR 0.001 ")
    assert {line.split("|")[tar_column].strip() for line in lines[2:]} == {"—"}
    # a fine-tuned model appears on its own task only
    tuned = accuracy_table({"eyeglasses-resnet50": evaluations["eyeglasses-resnet50"]}).splitlines()[2:]
    assert [line.split("|")[2:4] for line in tuned] == [
        [" eyeglasses ", f" {c} "] for c in ("A/A", "notA/notA", "pooled")
    ]


def test_identification_table(evaluations, base):
    table = identification_table(evaluations)
    assert "| top-1 | top-2 | top-3 | top-5 |" in table.splitlines()[0]
    assert f"| {base['identification']['top_k']['1']:.3f} |" in table
    assert identification_table({"m": {**base, "identification": None}}) == "_no identification results_"


def test_two_starting_points_of_one_backbone_are_an_error(base):
    with pytest.raises(ReportError, match="both starting points of backbone 'resnet50'"):
        finetune_table({"pretrained-resnet50": base, "untrained-resnet50": base})


def test_write_report_from_json_roundtrip(tmp_path, evaluations):
    # the summarize stage reads the evaluate stages' JSON files: NaN arrive as null
    loaded = {m: json.loads(json.dumps(json_ready(ev))) for m, ev in evaluations.items()}
    paths = write_report(loaded, tmp_path / "summary.json", tmp_path / "report" / "report.md")
    names = sorted(p.name for p in paths)
    assert names == ["report.md", "roc_eyeglasses.png", "roc_wearing-hat.png", "summary.json"]
    for png in (tmp_path / "report").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    report = (tmp_path / "report" / "report.md").read_text()
    for heading in ("## 1. Same-person", "## 2. Fine-tuning", "## 3. Identification", "![roc_eyeglasses](roc_eyeglasses.png)"):
        assert heading in report
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["eyeglasses-resnet50.eyeglasses.pooled.auc"] == 0.9


def test_write_report_needs_evaluations(tmp_path):
    with pytest.raises(ReportError, match="no evaluations to report"):
        write_report({}, tmp_path / "s.json", tmp_path / "r.md")
