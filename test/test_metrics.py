import numpy as np
import pytest

from ssp_ros.eval.metrics import (
    ClassShare,
    ConfusionMatrix,
    FlickerRate,
    SequenceMetrics,
    TemporalConsistency,
    VideoConsistency,
    pair_miou,
)


def test_confusion_matrix_iou_by_hand() -> None:
    target = np.array([0, 0, 1, 1, 2, 255])
    pred = np.array([0, 1, 1, 1, 0, 2])
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    # class 0: tp 1, fp 1 (the 2 predicted as 0), fn 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: 0/1; 3 absent
    np.testing.assert_allclose(cm.iou()[:3], [1 / 3, 2 / 3, 0.0])
    assert np.isnan(cm.iou()[3])
    assert cm.miou() == pytest.approx((1 / 3 + 2 / 3) / 3)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)
    other = ConfusionMatrix(4)
    other.update(pred, target)
    cm.merge(other)
    assert cm.matrix.sum() == 10


def test_confusion_matrix_rejects_bad_ids() -> None:
    with pytest.raises(ValueError, match="outside 0..2"):
        ConfusionMatrix(3).update(np.array([3]), np.array([0]))


def test_an_unknown_prediction_is_skipped_on_either_side_not_scored() -> None:
    """Another segmenter's void pixels: as a prediction they are no class (TC pairs an unknown pixel with the
    next frame's class wherever the camera moved), so they count for nothing, like unlabelled truth."""
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 255, 1, 2]), np.array([0, 1, 1, 255]))
    assert cm.matrix.sum() == 2 and cm.miou() == 1.0
    assert pair_miou(np.array([[0, 255, 1]]), np.array([[0, 1, 255]]), 3) == 1.0


def zero_flow(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w, 2), np.float32)


def test_tc_of_constant_video_is_100() -> None:
    tc = TemporalConsistency(8)
    mask = np.full((32, 48), 3, np.uint8)
    for _ in range(5):
        tc.update(mask, mask, zero_flow(32, 48))
    assert tc.value() == 1.0


def test_tc_of_independent_random_predictions_is_chance() -> None:
    rng = np.random.default_rng(0)
    classes = 8
    tc = TemporalConsistency(classes)
    for _ in range(6):
        a, b = rng.integers(0, classes, (2, 64, 64)).astype(np.uint8)
        tc.update(a, b, zero_flow(64, 64))
    # two independent uniform maps: IoU per class = (1/C²) / (2/C − 1/C²) = 1 / (2C − 1)
    assert tc.value() == pytest.approx(1 / (2 * classes - 1), abs=0.01)


def test_tc_follows_the_flow() -> None:
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:12] = 1
    moved = np.roll(mask, 3, axis=1)  # the object moved 3 px right
    flow = zero_flow(20, 30)
    flow[..., 0] = 3.0
    valid = np.ones((20, 30), bool)
    assert TemporalConsistency(2).update(mask, moved, flow, valid) == 1.0
    assert TemporalConsistency(2).update(mask, moved, zero_flow(20, 30)) < 0.7


def test_tc_skips_pixels_whose_flow_leaves_the_frame() -> None:
    a = np.zeros((10, 10), np.uint8)
    b = np.ones((10, 10), np.uint8)
    b[:, :5] = 0
    flow = zero_flow(10, 10)
    flow[:, 5:, 0] = 20.0  # right half leaves the frame: only the matching left half counts
    assert TemporalConsistency(2).update(a, b, flow) == 1.0


def test_flicker_counts_prediction_changes_where_truth_is_stable() -> None:
    labels = np.zeros((10, 10), np.uint8)
    labels[:, 5:] = 1
    next_labels = labels.copy()
    next_labels[:, 5] = 0  # truth changes on one column: excluded
    pred, next_pred = labels.copy(), labels.copy()
    next_pred[0:2, 0:5] = 1  # 10 stable-truth pixels flicker
    flicker = FlickerRate()
    flicker.update(pred, labels, next_pred, next_labels, zero_flow(10, 10))
    assert flicker.stable == 90 and flicker.changed == 10
    assert flicker.value() == pytest.approx(10 / 90)


def test_vc_with_zero_flow_matches_vspw_definition() -> None:
    rng = np.random.default_rng(1)
    n, frames = 3, 6
    gts = [(rng.random((12, 16)) < 0.7).astype(np.uint8) for _ in range(frames)]
    preds = [(rng.random((12, 16)) < 0.8).astype(np.uint8) for _ in range(frames)]
    vc = VideoConsistency(n)
    for gt, pred in zip(gts, preds):
        vc.update(pred, gt, zero_flow(12, 16), None)
    expected = []
    for i in range(frames - n + 1):  # VSPW: pixels where gt is equal over the clip; share where pred is too
        gt_same = np.all([gts[i + j] == gts[i] for j in range(n)], axis=0)
        pred_same = np.all([preds[i + j] == preds[i] for j in range(n)], axis=0)
        expected.append((gt_same & pred_same).sum() / gt_same.sum())
    assert vc.value() == pytest.approx(np.mean(expected))


def test_vc_tracks_pixels_along_the_flow() -> None:
    frames = [np.roll(np.tile(np.arange(16, dtype=np.uint8) % 4, (8, 1)), k, axis=1) for k in range(4)]
    flow = zero_flow(8, 16)
    flow[..., 0] = 1.0
    vc = VideoConsistency(4)
    for f in frames:
        vc.update(f, f, flow, None)
    assert vc.value() == 1.0


def test_sequence_metrics_report_on_ground_truth(small_video) -> None:
    metrics = SequenceMetrics(8, vc_lengths=(4,))
    for frame in small_video:
        metrics.add(frame.labels, frame.labels, frame.flow, frame.valid)
    report = metrics.report()
    assert report["frames"] == len(small_video)
    assert report["miou"] == 100.0 and report["flicker"] == 0.0 and report["vc4"] == 100.0
    assert report["tc"] > 95.0 and len(report["tc_per_pair"]) == len(small_video) - 1


def test_sequence_metrics_without_labels_report_tc_only() -> None:
    metrics = SequenceMetrics(3)
    mask = np.zeros((8, 8), np.uint8)
    metrics.add(mask, flow=zero_flow(8, 8))
    metrics.add(mask)
    report = metrics.report()
    assert report["miou"] is None and report["flicker"] is None and report["tc"] == 100.0


def test_class_share_counts_predicted_pixels_per_class() -> None:
    shares = ClassShare(4)
    assert shares.value() is None
    shares.update(np.array([[0, 0, 1, 255]], np.uint8))  # the ignore label is no class
    shares.update(np.array([[2, 2, 2, 2]], np.uint8))
    assert shares.value() == pytest.approx([100 * 2 / 7, 100 / 7, 100 * 4 / 7, 0.0], abs=1e-3)
    with pytest.raises(ValueError, match="outside 0..3"):
        shares.update(np.array([[4]], np.uint8))


def test_sequence_metrics_give_label_free_flicker_and_class_shares() -> None:
    """Without labels: the change rate along the flow (a quarter of the tracked pixels change class) and the share
    of each class over both frames."""
    first = np.zeros((8, 8), np.uint8)
    second = first.copy()
    second[:4, :4] = 1
    metrics = SequenceMetrics(3)
    metrics.add(first, flow=zero_flow(8, 8))
    metrics.add(second)
    report = metrics.report()
    assert report["change_rate"] == 25.0 and report["flicker"] is None and report["miou"] is None
    assert report["class_share"] == [87.5, 12.5, 0.0]
