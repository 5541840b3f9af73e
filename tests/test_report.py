import copy
import json

import numpy as np
import pandas as pd
import pytest

from faceid.config.evaluate import BootstrapParams, EvaluateParams
from faceid.config.whole import load_all_params
from faceid.evaluate.evaluation import POOLED, EvaluateError, evaluate_embeddings, json_ready
from faceid.project.naming import evaluation_stems, model_name, start_label
from faceid.report import (
    ORIGINAL,
    Context,
    FigureJob,
    ReportError,
    accuracy_table,
    findings,
    finetune_table,
    identification_table,
    load_evaluations,
    plot_data,
    roles,
    stale_evaluations,
    summarize,
    summary_size,
    write_report,
)
from tests._params import PARAMS, section

GLOBAL_FMR = 0.1


def _evaluation(seed=0):
    """One real detail from a tiny world with identity structure."""
    rng = np.random.default_rng(seed)
    n_id, per, dim = 20, 4, 16
    ids = np.repeat(np.arange(n_id), per)
    emb = rng.normal(size=(n_id, dim))[ids] + 0.7 * rng.normal(size=(n_id * per, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    names = [f"{i:06d}.jpg" for i in range(n_id * per)]
    records = []
    for task, condition, ka, kb in [("orig", "all", 0, 1), ("Eyeglasses", "A/A", 1, 2),
                                    ("Eyeglasses", "A/notA", 0, 2),
                                    ("Eyeglasses", "notA/notA", 2, 3), ("Wearing_Hat", "A/notA", 0, 3),
                                    ("Wearing_Hat", "notA/notA", 1, 3)]:  # fmt: skip
        for i in range(n_id):
            j = (i + 1) % n_id
            records.append((task, "test", "genuine", condition, names[i * per + ka], names[i * per + kb], i, i))
            records.append((task, "test", "impostor", condition, names[i * per + ka], names[j * per + kb], i, j))
    pairs = pd.DataFrame(records, columns=["task", "split", "kind", "condition", "image_a", "image_b",
                                           "identity_a", "identity_b"])  # fmt: skip
    manifest = pd.DataFrame({"image": names, "status": "detected"})
    protocol = pd.DataFrame({"image": names, "identity": ids})
    params = section(EvaluateParams, fars=(1e-3, 0.1), global_fmr=GLOBAL_FMR, fpr_grid_size=6, fpr_grid_min=1e-2,
                     bootstrap=section(BootstrapParams, n_boot=20, n_boot_conclusions=50))  # fmt: skip
    return json_ready(evaluate_embeddings(emb.astype(np.float32), names, pairs, manifest, protocol, params))


@pytest.fixture(scope="module")
def base():
    return _evaluation()


def _model(detail, backbone, task=None, init=None, start=None, auc=None, ci=None):
    """A copy of `detail` as another model: metadata, and AUC (with interval) per (task, condition)."""
    out = copy.deepcopy(detail)
    out["model"] = {"name": "", "backbone": backbone, "task": task, "init": init, "start": start}
    for (t, condition), value in (auc or {}).items():
        cell = out["tasks"][t][condition]
        cell["auc"] = value
        low, high = (ci or {}).get((t, condition), (value - 0.01, value + 0.01))
        cell["auc_ci"].update(low=low, high=high)
    return out


@pytest.fixture(scope="module")
def evaluations(base):
    return {
        "untrained-resnet50": _model(base, "resnet50", start="untrained",
                                     auc={("orig", "all"): 0.80, ("Eyeglasses", "A/notA"): 0.70}),
        "orig-resnet50": _model(base, "resnet50", "orig", "pretrained",
                                auc={("orig", "all"): 0.90, ("Eyeglasses", "A/notA"): 0.75,
                                     ("Eyeglasses", "notA/notA"): 0.95, ("Wearing_Hat", "A/notA"): 0.85,
                                     ("Wearing_Hat", "notA/notA"): 0.88},
                                ci={("Wearing_Hat", "A/notA"): (0.80, 0.90)}),
        "Eyeglasses-resnet50": _model(base, "resnet50", "Eyeglasses", "orig",
                                      auc={("orig", "all"): 0.895, ("Eyeglasses", "A/notA"): 0.82}),
        "untrained-inception_resnet_v1": _model(base, "inception_resnet_v1", start="untrained"),
    }  # fmt: skip


def _leaves(tree, prefix=""):
    return [
        k
        for key, v in tree.items()
        for k in (_leaves(v, f"{prefix}{key}.") if isinstance(v, dict) else [f"{prefix}{key}"])
    ]


def test_roles_come_from_model_metadata(evaluations):
    found = roles(evaluations)
    assert found.start == {"resnet50": "untrained-resnet50", "inception_resnet_v1": "untrained-inception_resnet_v1"}
    assert found.orig == {"resnet50": "orig-resnet50"}
    assert found.tuned == {("Eyeglasses", "resnet50"): "Eyeglasses-resnet50"}
    assert found.init["Eyeglasses-resnet50"] == "orig-resnet50"  # fine-tuned from orig
    assert found.init["orig-resnet50"] == "untrained-resnet50"
    with pytest.raises(ReportError, match="play the same part"):
        roles({**evaluations, "twin": evaluations["orig-resnet50"]})


COMPARED = {
    "orig-resnet50": {"start": "untrained-resnet50", "task": "orig", "equals_start": False,
                      "original": {"delta": 0.10, "low": 0.05, "high": 0.15, "verdict": "raised"}},
    "Eyeglasses-resnet50": {"start": "orig-resnet50", "task": "Eyeglasses", "equals_start": False,
                            "original": {"delta": -0.02, "low": -0.03, "high": -0.01, "verdict": "lowered"},
                            "attribute": {"delta": 0.07, "low": 0.02, "high": 0.12, "verdict": "raised"}},
}  # fmt: skip


def test_summary_is_the_study_answer_nested_by_backbone(evaluations):
    summary = summarize(evaluations, COMPARED)
    resnet = summary["resnet50"]
    assert resnet["start_auc"] == 0.80 and resnet["orig_auc"] == 0.90
    assert resnet["Eyeglasses"] == {"delta": 0.07, "verdict": "raised"}  # paired, against orig (its init)
    assert resnet["mean_delta"] == pytest.approx(0.07)
    assert resnet["orig_fnmr"] == evaluations["orig-resnet50"]["global_threshold"]["fnmr"]
    assert resnet["orig_top1"] == evaluations["orig-resnet50"]["identification"]["top_k"]["top1"]
    assert summary["inception_resnet_v1"]["orig_auc"] is None  # no orig model: null, not dropped
    assert not any("." in part for key in _leaves(summary) for part in key.split(".")[-1:])
    assert summary_size(summary) == len(_leaves(summary)) == 4 + (4 + 2 + 1)
    same = {**COMPARED, "Eyeglasses-resnet50": {**COMPARED["Eyeglasses-resnet50"], "equals_start": True}}
    resnet = summarize(evaluations, same)["resnet50"]
    assert resnet["Eyeglasses"]["delta"] == 0.0 and resnet["mean_delta"] is None  # no fine-tune trained


def _default_study(base, with_map: bool) -> tuple[dict, int]:
    """Evaluations of params.yaml's study (a start, orig and a fine-tune per task, for each
    backbone), the starting points and orig with or without a robustness map; and the
    number of values summary.json has for it, by its layout (faceid.report.summary)."""
    study = load_all_params(PARAMS).train
    extra = _map({"Bald": -0.1}) if with_map else {}
    evaluations = {}
    for backbone in study.backbones:
        evaluations[f"untrained-{backbone}"] = _model(base, backbone, start="untrained") | extra
        evaluations[f"orig-{backbone}"] = _model(base, backbone, "orig", "pretrained") | extra
        for task in study.tasks:
            evaluations[f"{task}-{backbone}"] = _model(base, backbone, task, "orig")
    # per backbone: start_auc, orig_auc, orig_fnmr, orig_top1; a delta and a verdict per
    # task; mean_delta; with a map, hurt_attributes and max_group_ratio
    per_backbone = 4 + 2 * len(study.tasks) + 1 + (2 if with_map else 0)
    return evaluations, len(study.backbones) * per_backbone


@pytest.mark.parametrize("with_map", [False, True])
def test_summary_of_the_default_study_stays_within_forty_values(base, with_map):
    """summary.json promises at most 40 values on the default study (docs/evaluation.md):
    DVC shows each as a column. A longer task or backbone list in params.yaml, or a new
    key per backbone, that breaks the promise fails here."""
    evaluations, expected = _default_study(base, with_map)
    size = summary_size(summarize(evaluations))
    assert size == expected  # the count follows the layout, so the bound below is about summary.json
    assert size <= 40


def test_findings_follow_the_numbers(evaluations):
    context = Context(dataset={"source": "synthetic", "layout": "aligned", "identities": 20, "images": 80,
                               "test": {"identities": 20, "images": 80}},
                      crop={"detection_rate": 0.98, "fallback_rate": 0.02, "missing_rate": 0.0,
                            "unreadable_rate": 0.0}, comparisons=COMPARED)  # fmt: skip
    lines = findings(evaluations, context)
    text = "\n".join(lines)
    assert lines[0].startswith("**Data.** **synthetic**") and "test 20 identities / 80 images" in lines[0]
    assert "fallback crops 2.0%" in lines[1]
    assert "**Operating point, orig-resnet50:** threshold" in text and "false matches" in text
    assert ("**2. Eyeglasses-resnet50** (from orig-resnet50): Eyeglasses A/notA AUC raised by +0.070 "
            "[+0.020, +0.120]; original pairs lowered by -0.020 [-0.030, -0.010].") in lines  # fmt: skip
    assert ("**Warning:** Eyeglasses-resnet50 ended worse than its start orig-resnet50 on the original pairs: "
            "AUC lowered by -0.020 [-0.030, -0.010].") in lines  # fmt: skip
    assert "**2. orig-resnet50** (from untrained-resnet50): original pairs raised by +0.100 [+0.050, +0.150]." in lines
    assert "untrained" not in next(line for line in lines if line.startswith("**2. Eyeglasses"))  # its real start
    null = {**COMPARED, "Eyeglasses-resnet50": {**COMPARED["Eyeglasses-resnet50"],
            "original": {"delta": -0.001, "low": -0.01, "high": 0.008, "verdict": "no detectable change"}}}  # fmt: skip
    lines = findings(evaluations, Context(comparisons=null))
    assert not any(
        "Warning:** Eyeglasses-resnet50 ended worse" in line for line in lines
    )  # no harm without an interval below 0
    assert any("original pairs no detectable change (-0.001 [-0.010, +0.008])" in line for line in lines)


def test_findings_warn_about_collapsed_models(evaluations):
    assert not any("collapsed" in s for s in findings(evaluations))
    collapsed = copy.deepcopy(evaluations["orig-resnet50"])
    collapsed["tasks"]["orig"]["all"]["similarity"]["impostor"]["p50"] = 0.99991
    collapsed["global_threshold"]["threshold"] = 0.999987
    lines = findings({**evaluations, "orig-resnet50": collapsed})
    assert ("**Warning:** orig-resnet50 looks collapsed: median impostor cosine 0.9999, global threshold 1.0000"
            " (different people are near-identical to it).") in lines  # fmt: skip


def test_accuracy_table_rows_and_threshold_digits(evaluations):
    table = accuracy_table(evaluations)
    lines = table.splitlines()
    assert lines[0].startswith(
        "| model | task | condition | acc > 0.6000 (FAR) | acc > 0.7000 (FAR) | acc > 0.8000 (FAR) |"
    )
    assert "TAR@FAR 0.001 (threshold) | TAR@FAR 0.1 (threshold) |" in lines[0]
    starts = [line for line in lines if line.startswith("| untrained-resnet50 |")]
    assert len(starts) == 1 + 4 + 3  # orig/all (no pooled twin), then every attribute cell with pooled
    tuned = [line for line in lines if line.startswith("| Eyeglasses-resnet50 |")]
    assert {line.split(" | ")[2] for line in tuned} == {"A/A", "A/notA", "notA/notA", POOLED}
    threshold = evaluations["orig-resnet50"]["tasks"]["orig"]["all"]["tar_at_far"][1]["threshold"]
    assert f"({threshold:.4f})" in table
    assert "— (—)" in table  # TAR@FAR 0.001 is unmeasurable on 20 impostors


def test_finetune_table_is_paired_against_the_init_model(evaluations):
    table = finetune_table(evaluations, COMPARED)
    row = next(line for line in table.splitlines() if line.startswith("| Eyeglasses | resnet50 |"))
    assert "| orig-resnet50 | 0.820 | raised by +0.070 [+0.020, +0.120] | lowered by -0.020" in row


def test_identification_table(evaluations, base):
    table = identification_table(evaluations)
    assert "| model | score | gallery | probes (people) | excluded (single image) | top-1 [95% CI] |" in table
    ci = base["identification"]["top_k_ci"]["top1"]
    assert f"| {base['identification']['top_k']['top1']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] |" in table


def test_plot_data_has_a_model_per_row_for_current_tasks_only(evaluations):
    files = plot_data(evaluations)
    assert sorted(files) == ["cmc.json", "roc/Eyeglasses.json", "roc/orig.json"]
    models = {row["model"] for row in files["roc/Eyeglasses.json"]["roc"]}
    assert models == {"untrained-resnet50", "orig-resnet50", "Eyeglasses-resnet50", "untrained-inception_resnet_v1"}
    assert {row["model"] for row in files["cmc.json"]["cmc"]} == {
        "untrained-resnet50", "orig-resnet50", "untrained-inception_resnet_v1"}  # fmt: skip
    assert set(files["cmc.json"]["cmc"][0]) == {"model", "rank", "rate"}


def test_write_report_from_json_roundtrip(tmp_path, evaluations):
    loaded = json.loads(json.dumps(evaluations))
    written = write_report(loaded, tmp_path / "summary.json", tmp_path / "report" / "report.md",
                           tmp_path / "plots", context=Context(comparisons=COMPARED))  # fmt: skip
    report = (tmp_path / "report" / "report.md").read_text()
    assert report.index("## What this run shows") < report.index("## 1. The study's threshold accuracy")
    assert "## 2. Fine-tuning" in report and "## 3. Identification" in report
    assert "![roc_Eyeglasses](roc_Eyeglasses.png)" in report
    assert "![det_Eyeglasses](det_Eyeglasses.png)" in report
    assert (tmp_path / "report" / "roc_Eyeglasses.png").stat().st_size > 1000
    assert (tmp_path / "report" / "det_orig.png").stat().st_size > 1000
    appendix = (tmp_path / "report" / "report_appendix.md").read_text()
    assert "| untrained-resnet50 | Wearing_Hat | notA/notA |" in appendix and "Wearing_Hat | notA/notA" not in report
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["resnet50"]["orig_auc"] == 0.90 and summary["resnet50"]["Eyeglasses"]["verdict"] == "raised"
    assert summary["inception_resnet_v1"]["orig_auc"] is None
    assert (tmp_path / "plots" / "roc" / "orig.json").is_file() and len(written) == 3 + 4 + 3


def test_model_names_come_from_params_and_start(tmp_path, evaluations):
    stems = evaluation_stems(("resnet50",), ("orig", "Eyeglasses"))
    assert stems == ["base-resnet50", "orig-resnet50", "Eyeglasses-resnet50"]
    folder = tmp_path / "detail"
    folder.mkdir()
    for stem, name in zip(stems, ["untrained-resnet50", "orig-resnet50", "Eyeglasses-resnet50"], strict=True):
        (folder / f"{stem}.json").write_text(json.dumps(evaluations[name]))
    (folder / "Smiling-resnet50.json").write_text("{}")  # an earlier profile's
    loaded = load_evaluations(folder, stems)
    assert list(loaded) == ["untrained-resnet50", "orig-resnet50", "Eyeglasses-resnet50"]
    pretrained = {
        **evaluations["untrained-resnet50"],
        "model": {**evaluations["untrained-resnet50"]["model"], "start": start_label("vggface2")},
    }
    assert model_name("base-resnet50", pretrained) == "pretrained-resnet50"
    assert start_label("none") == "untrained"
    assert stale_evaluations([folder, tmp_path / "absent"], stems) == [folder / "Smiling-resnet50.json"]
    with pytest.raises(EvaluateError, match=r"no evaluation of base-inception_resnet_v1; run `dvc repro`"):
        load_evaluations(folder, ["base-inception_resnet_v1", *stems])


def test_figures_drawn_in_another_process_are_the_same_files(tmp_path, evaluations, monkeypatch):
    loaded = json.loads(json.dumps(evaluations))
    here = FigureJob(loaded, tmp_path / "here", ORIGINAL, 0).result()
    job = FigureJob(loaded, tmp_path / "there", ORIGINAL, 3)
    assert len(job._futures) == 3  # really in other processes: 4 figures, every third each
    there = job.result()
    assert [p.name for p in here] == [p.name for p in there] and len(here) == 4
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(here, there, strict=True))
    # a failure in the child is raised in the caller, with its message
    broken = {name: {**entry, "model": None} for name, entry in loaded.items()}
    with pytest.raises(ReportError, match=r"untrained-resnet50.: its evaluation has no model\.backbone"):
        FigureJob(broken, tmp_path / "broken", ORIGINAL, 2).result()
    # write_report with them rendered already draws nothing itself
    monkeypatch.setattr("faceid.report.render_figures", lambda *a: pytest.fail("drew the figures again"))
    written = write_report(loaded, tmp_path / "s.json", tmp_path / "there" / "report.md", tmp_path / "p",
                           context=Context(comparisons=COMPARED), figures=there)  # fmt: skip
    assert written[3:7] == there and "![roc_Eyeglasses](roc_Eyeglasses.png)" in written[1].read_text()


def test_write_report_needs_evaluations(tmp_path):
    with pytest.raises(ReportError, match="no evaluations"):
        write_report({}, tmp_path / "s.json", tmp_path / "r.md", tmp_path / "p")


def _map(costs: dict, fmr_within=(0.002, 0.001)):
    """A detail's robustness map and one group, with the given delta AUC per attribute."""
    cell = {"auc": 0.8, "auc_ci": {"low": 0.7, "high": 0.9}, "fnmr": 0.1, "fmr": 0.001,
            "n_pairs": {"genuine": 10, "impostor": 20}, "n_identities": 5}  # fmt: skip
    attributes = {a: {"cells": {"A/A": cell, "A/notA": cell, "notA/notA": cell}, "delta_auc": d,
                      "delta_auc_ci": {"low": d and d - 0.05, "high": d and d + 0.05}, "tested": d is not None,
                      "discovery": d is not None and d < -0.05, "q_value": 0.01 if d is not None and d < -0.05 else 0.5,
                      "reason": None if d is not None else "not measurable"}
                  for a, d in costs.items()}  # fmt: skip
    hurt = sorted((d, a) for a, d in costs.items() if d is not None and d < -0.05)
    tests = {"fdr": 0.05, "n_attributes": len(costs), "n_tested": sum(d is not None for d in costs.values()),
             "hurt": [a for _, a in hurt], "helped": []}  # fmt: skip
    ratio = max(fmr_within) / min(fmr_within)
    groups = {"Male": {"fnmr": {"A": 0.1, "notA": 0.1}, "fmr": {"A/A": fmr_within[0], "notA/notA": fmr_within[1],
                                                               "A/notA": 0.0005},
                       "fnmr_ratio": {"value": 1.0, "low": 0.8, "high": 1.3, "reason": None, "worse": "A",
                                      "sufficient": True},
                       "fmr_ratio": {"value": ratio, "low": ratio / 2, "high": ratio * 2, "reason": None,
                                     "worse": "A/A", "sufficient": True},
                       "reason": None}}  # fmt: skip
    return {"attributes": attributes, "attribute_tests": tests, "groups": groups}


def test_robustness_map_and_demographics_in_report_and_summary(tmp_path, evaluations):
    with_map = copy.deepcopy(dict(evaluations))
    with_map["untrained-resnet50"].update(_map({"Wearing_Hat": -0.05, "Smiling": -0.01, "Blurry": 0.0}))
    with_map["orig-resnet50"].update(_map({"Wearing_Hat": -0.30, "Smiling": -0.02, "Blurry": -0.10, "Bald": None},
                                          fmr_within=(0.004, 0.001)))  # fmt: skip
    with_map["Eyeglasses-resnet50"].update(_map({"Wearing_Hat": -0.40, "Smiling": 0.0, "Blurry": -0.1}))
    summary = summarize(with_map)["resnet50"]
    assert summary["hurt_attributes"] == "Wearing_Hat,Blurry"  # the orig model's discoveries, Smiling not one
    assert summary["max_group_ratio"] == pytest.approx(4.0)
    flips = {"Wearing_Hat": {"identities": 10, "flip_share": 0.4}}
    write_report(with_map, tmp_path / "s.json", tmp_path / "r" / "report.md", tmp_path / "p", flips=flips)
    report = (tmp_path / "r" / "report.md").read_text()
    section = report[report.index("## 4. Robustness map"):report.index("## 5. Demographic")]
    rows = [line for line in section.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert rows[0].startswith("| 1 | Wearing_Hat | -0.050 [-0.100, 0.000] | -0.300 [-0.350, -0.250] | hurts (q 0.01) |")
    assert rows[0].endswith("| 0.40 |") and rows[1].startswith("| 2 | Blurry |")
    assert "![map_resnet50](map_resnet50.png)" in report and "![finetune_map_Eyeglasses]" in report
    assert (tmp_path / "r" / "finetune_map_Eyeglasses.png").stat().st_size > 1000
    assert ("The largest demographic differential that meets the rules: orig-resnet50, Male vs not Male: FMR "
            "(impostor pairs accepted within a group) is 4.00 times higher for A/A "
            "(interval 2.00 to 8.00") in report  # fmt: skip
    assert (
        "| orig-resnet50 | Male | 0.1000 / 0.1000 | 0.0040 / 0.0010 / 0.0005 | 1.00 [0.80, 1.30] (A worse) |" in report
    )
