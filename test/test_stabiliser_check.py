"""``ssp stabilise-check``'s held-aside segmenters and its refusals (the whole check is measured in the model card,
not here: it runs our image model over two flights)."""

from __future__ import annotations

import numpy as np
import pytest

from ssp_ros.config import load_config
from ssp_ros.errors import SspError
from ssp_ros.eval.stabiliser_check import MERGED_NAMES, TILE, markdown, merge, noisy_tiles, run_stabiliser_check
from ssp_ros.stabiliser import VOID


def test_the_merged_segmenter_maps_uavid_onto_four_classes_and_keeps_unknown() -> None:
    labels = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [VOID, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(merge(labels), [[0, 1, 0, 2], [2, 3, 3, 3], [VOID, 0, 0, 0]])
    assert set(np.unique(merge(labels))) - {VOID} == set(range(len(MERGED_NAMES)))


def test_noisy_tiles_change_whole_tiles_per_frame_and_never_unknown_pixels() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((8 * TILE, 8 * TILE), np.uint8)
    labels[:5] = VOID
    frames = [noisy_tiles(labels, rng, 8) for _ in range(3)]
    for out in frames:
        assert (out[:5] == VOID).all() and int(out[5:].max()) < 8
        changed = (out != labels)[TILE:, :].reshape(7, TILE, 8, TILE).any(axis=(1, 3))
        assert 0 < changed.sum() < 7 * 8  # some tiles, not all
    assert not np.array_equal(frames[0], frames[1])  # the errors come and go


def test_the_check_refuses_what_it_cannot_measure() -> None:
    with pytest.raises(SspError, match="--frames 2: the check needs at least 3 frames"):
        run_stabiliser_check(load_config(), None, frames=2)


def test_the_report_names_the_flights_whose_headroom_is_under_the_per_flight_target() -> None:
    def run(name: str, before: float, after: float, truth: float) -> dict:
        metrics = {"tc": before, "miou": 50.0, "flicker": 1.0}
        return {"segmenter": name, "flight": "nadir", "classes": 8, "before": metrics,
                "after": {**metrics, "tc": after}, "truth_tc": truth, "headroom": round(truth - before, 2),
                "tc_gain": round(after - before, 2), "miou_change": 0.0, "ms_per_frame": 9.0}

    runs = [run("steady", 89.0, 91.0, 94.5), run("shaky", 40.0, 80.0, 99.0)]
    report = {"frames": 40, "size": [368, 640], "similarity_model": "models/ssp_stabiliser", "keep_ratio": 0.55,
              "confidence": 0.9, "runs": runs,
              "mean_tc_gain": 21.0, "min_tc_gain": 2.0, "worst_miou_change": 0.0,
              "targets": {"mean_tc_gain": 10.0, "each_tc_gain": 8.0, "max_miou_loss": 0.5},
              "met": {"mean_tc_gain": True, "each_tc_gain": False, "miou": True}}
    text = markdown(report)
    assert "Similarity model models/ssp_stabiliser, keep_ratio 0.55, hard-label confidence 0.9." in text
    assert "| steady | nadir | 8 | 89.00 | 91.00 | 2.00 | 94.50 | 5.50 |" in text
    assert "under the per-flight target: steady nadir (5.50): a gain of 8.0" in text
    assert "shaky nadir" not in text.split("headroom (truth TC")[1]
