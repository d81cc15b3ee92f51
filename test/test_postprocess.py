import numpy as np
import torch
import torch.nn.functional as F

from ssp_ros.backends.postprocess import labels_from_logits, similarity_image


def test_labels_match_torch_upsampling_softmax_and_argmax() -> None:
    logits = np.random.default_rng(0).normal(0, 3, (1, 6, 24, 40)).astype(np.float32)
    probs = F.interpolate(torch.from_numpy(logits), size=(96, 160), mode="bilinear", align_corners=False).softmax(1)
    confidence, ids = probs[0].max(dim=0)
    got_ids, got_conf = labels_from_logits(logits, (96, 160))
    assert got_ids.dtype == got_conf.dtype == np.uint8 and got_ids.shape == (96, 160)
    assert (got_ids == ids.numpy()).mean() >= 0.999
    assert np.abs(got_conf.astype(int) - (confidence.numpy() * 255 + 0.5).astype(int)).max() <= 1


def test_ties_go_to_the_lower_class_and_confidence_is_one_over_k() -> None:
    ids, confidence = labels_from_logits(np.zeros((1, 4, 3, 5), np.float32), (6, 10))
    assert (ids == 0).all() and (confidence == round(255 / 4)).all()


def test_similarity_is_clipped_and_scaled() -> None:
    s = np.array([[[[-0.5, 0.5], [1.0, 2.0]]]], np.float32)
    out = similarity_image(s, (2, 2))
    assert out.tolist() == [[0, 128], [255, 255]]
