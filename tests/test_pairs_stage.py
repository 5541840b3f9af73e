"""stages/pairs.py and determinism: byte-identical outputs run to run, the same seed the same
pairs, adding a task leaves the other tasks' pairs and training files unchanged."""

from __future__ import annotations

import json

import pandas as pd
from stages.pairs import main

from faceid.config.evaluate import EvaluateParams
from faceid.pairs import build_pairs, task_train_files, write_train_folders
from tests._pairs_fixtures import TASKS, small_params
from tests._params import section, write_params


def test_same_seed_same_output_other_seed_differs(pairs_manifest, pairs_result):
    again = build_pairs(pairs_manifest, small_params(), TASKS, ())
    pd.testing.assert_frame_equal(again.pairs, pairs_result.pairs)
    pd.testing.assert_frame_equal(again.train_subsets, pairs_result.train_subsets)
    pd.testing.assert_frame_equal(again.identification, pairs_result.identification)
    other = build_pairs(pairs_manifest, small_params(seed=8), TASKS, ())
    assert not other.pairs.equals(pairs_result.pairs)


def test_adding_a_task_leaves_other_tasks_unchanged(pairs_manifest, pairs_result, tmp_path):
    more = build_pairs(pairs_manifest, small_params(), ("Blurry", *TASKS), ())
    for name in ("pairs", "train_subsets"):
        mine = getattr(pairs_result, name)
        theirs = getattr(more, name)
        pd.testing.assert_frame_equal(theirs[theirs["task"] != "Blurry"].reset_index(drop=True)
                                      .sort_values(list(mine.columns), ignore_index=True),
                                      mine.sort_values(list(mine.columns), ignore_index=True))
    # what the train stages depend on: every other task's folder keeps its bytes
    for res, out in ((pairs_result, tmp_path / "before"), (more, tmp_path / "after")):
        write_train_folders(out, res.train_subsets, res.pairs, list(res.metrics["train_subsets"]))
    for task in TASKS:
        for before, after in zip(
            task_train_files(tmp_path / "before", task), task_train_files(tmp_path / "after", task), strict=True
        ):
            assert before.read_bytes() == after.read_bytes(), before
    assert task_train_files(tmp_path / "after", "Blurry")[0].is_file()



def test_stage_end_to_end(tmp_path, pairs_manifest):
    pairs_manifest.to_parquet(tmp_path / "manifest.parquet", index=False)
    write_params(tmp_path / "params.yaml", {"train": {"tasks": list(TASKS[1:])}, "pairs": {
        "seed": 7,
        "verification": {"genuine_per_condition": 30, "impostor_per_condition": 40,
                         "orig_genuine": 50, "orig_impostor": 60},
        "identification": {"n_identities": 8, "n_images": 30},
    }})  # fmt: skip

    def run(out):
        args = ["--params", str(tmp_path / "params.yaml"), "--manifest", str(tmp_path / "manifest.parquet"),
                "--out", str(tmp_path / out), "--metrics", str(tmp_path / out / "metrics.json"),
                "--detail", str(tmp_path / out / "metrics_detail.json")]
        assert main(args) == 0
        return {str(p.relative_to(tmp_path / out)): p.read_bytes() for p in sorted((tmp_path / out).rglob("*.*"))}

    first, second = run("a"), run("b")
    train_files = [f"train/{t}/{f}.parquet" for t in sorted(TASKS) for f in ("subset", "val_pairs")]
    assert sorted(first) == ["attribute_pairs.parquet", "identification.parquet", "metrics.json",
                             "metrics_detail.json", "pairs.parquet", *train_files]  # fmt: skip
    assert first == second  # byte-identical
    pairs = pd.read_parquet(tmp_path / "a" / "pairs.parquet")
    assert list(pairs.columns) == ["task", "split", "kind", "condition", "image_a", "image_b",
                                   "identity_a", "identity_b", "fallback"]
    assert list(pd.read_parquet(tmp_path / "a" / "identification.parquet").columns) == ["image", "identity"]
    for task in TASKS:  # what a training run reads: its rows, in the order of the whole tables
        subset_path, val_path = task_train_files(tmp_path / "a", task)
        expected_val = pairs[(pairs["task"] == task) & (pairs["split"] == "val")].reset_index(drop=True)
        pd.testing.assert_frame_equal(pd.read_parquet(val_path), expected_val)
        subset = pd.read_parquet(subset_path)
        assert list(subset.columns) == ["task", "image", "identity", "label"] and set(subset["task"]) == {task}
    detail = json.loads(first["metrics_detail.json"])
    expected = build_pairs(
        pairs_manifest, small_params(), TASKS, section(EvaluateParams).attribute_names
    )  # params.yaml's: all 40
    pd.testing.assert_frame_equal(pairs, expected.pairs)
    assert detail == json.loads(json.dumps(expected.metrics))
    headline = json.loads(first["metrics.json"])  # the DVC metric: a few counts, no nesting
    assert set(headline) == {"val_pairs", "test_pairs", "shortfalls", "identification_images", "excluded_images"}
    assert headline["val_pairs"] + headline["test_pairs"] == len(pairs)
    assert headline["shortfalls"] == len(detail["shortfalls"])
    assert headline["identification_images"] == len(pd.read_parquet(tmp_path / "a" / "identification.parquet"))
