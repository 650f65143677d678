"""The real-people protocols of ``odar bench fewshot``: which windows each head trains and is
tested on (no data needed), and the report of a quick run on the real HAPT download."""

from __future__ import annotations

import argparse
import contextlib
import io
import json

import numpy as np
import pytest

from odar.cli import main
from odar.drivers.emulated import hapt
from odar.harness.bench import hapt_fewshot


def _layout():
    """Every subject with two recordings of 12 windows: 2 per activity each."""
    subject, recording, y = [], [], []
    for person in hapt.SUBJECTS:
        for index in (0, 1):
            for activity in range(6):
                subject += [person] * 2
                recording += [index] * 2
                y += [activity] * 2
    return np.array(y), np.array(subject), np.array(recording)


def _args(**overrides) -> argparse.Namespace:
    return argparse.Namespace(**{"seed": 7, "draws": 1, "shots": 2, "hapt_test": 40, **overrides})


def test_personal_tasks_never_put_one_recording_on_both_sides():
    y, subject, recording = _layout()
    tasks = hapt_fewshot.make_tasks(y, subject, recording, tuple(range(6)), (2, 4), _args())
    personal = [t for t in tasks if t.protocol == "personal"]
    assert len(personal) == 2 * 2 * 15  # subjects x directions x pairs
    for task in personal:
        assert set(subject[task.train]) == set(subject[task.test]) == {task.subject}
        assert len(set(recording[task.train])) == 1
        assert set(recording[task.train]).isdisjoint(recording[task.test])
        assert set(y[task.train]) == set(y[task.test]) == set(task.pair)
        np.testing.assert_array_equal(y[task.train], np.array(task.pair)[task.train_y])


def test_cross_person_shots_come_from_training_subjects_and_tests_from_held_out_ones():
    y, subject, recording = _layout()
    tasks = hapt_fewshot.make_tasks(y, subject, recording, tuple(range(6)), (2, 4), _args())
    cross = [t for t in tasks if t.protocol == "cross_person"]
    assert len(cross) == hapt_fewshot.CROSS_PERSON_DRAWS_PER_DRAW * 15
    for task in cross:
        assert set(subject[task.train]) <= set(hapt.TRAIN_SUBJECTS)
        assert set(subject[task.test]) <= {2, 4}
        assert len(task.train) == 4 and np.bincount(task.train_y).tolist() == [2, 2]


def test_a_pair_missing_from_a_recording_is_skipped_not_scored():
    y, subject, recording = _layout()
    # Subject 10's second recording without walking, as in HAPT.
    keep = ~((subject == 10) & (recording == 1) & (y == 0))
    tasks = hapt_fewshot.make_tasks(y[keep], subject[keep], recording[keep], (0, 3), (10,), _args())
    assert not [t for t in tasks if t.protocol == "personal"]


@pytest.mark.slow
def test_quick_run_on_real_people_reports_both_protocols():
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        argv = ["bench", "fewshot", "--json", "--quick", "--hapt", "only", "--threads", "1"]
        assert main([*argv, "--seed-head", "/nonexistent"]) == 0
    report = json.loads(buffer.getvalue())
    assert report["hapt"]["held_out"]["disjoint"]
    assert report["hapt"]["test_subjects"] == list(hapt_fewshot.QUICK_SUBJECTS)
    pairs = {"walking/sitting", "walking/standing", "sitting/standing"}
    for protocol in ("cross_person", "personal"):
        for extractor in ("ours", "baseline_stats_logistic_regression"):
            result = report["results"][f"hapt_{protocol}_{extractor}"]
            assert set(result["per_pair"]) == pairs
            assert result["worst_pair"] <= result["accuracy"] <= 1.0
        # Walking against sitting differs in everything; chance is 0.5.
        assert report["results"][f"hapt_{protocol}_ours"]["per_pair"]["walking/sitting"] > 0.5
    assert "ours" not in report["results"]  # --hapt only skips the simulated data sets
