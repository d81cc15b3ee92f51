"""The shipped default model, through the same pipeline as `ssp demo`, on a held-aside synthetic flight.

Regression guards well inside what was measured when the model was trained (models/README.md): on five
held-aside flights of each scenario SSP gave TC +9.7 to +22.4 (default) and +14.0 to +23.4 (oblique), mIoU
−0.8 to +6.0 and −0.6 to +0.3 over the image model alone; 99.7 % of sky pixels came out clutter.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from ssp_ros.backends import make_backend
from ssp_ros.config import load_config
from ssp_ros.eval.metrics import SequenceMetrics
from ssp_ros.models import read_weights_metadata
from ssp_ros.pipeline import Pipeline
from ssp_ros.resources import share_dir
from ssp_ros.schema import load_section
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import SyntheticConfig, load_sim_config
from ssp_ros.synthetic.labels import CLUTTER

WEIGHTS = share_dir() / "models" / "ssp_default.safetensors"


def run_flight(scenario: SyntheticConfig, frames: int = 40, seed: int = 2000) -> dict:
    """Image model and SSP over one held-aside flight, scored from one pass as ``ssp replay`` does (the pipeline
    keeps each frame's image-model mask): metric reports, SSP's resets and the share of sky called clutter."""
    cfg = load_config()
    pipeline = Pipeline(cfg, make_backend(cfg, 8), keep_image_mask=True)
    metrics = {name: SequenceMetrics(8, vc_lengths=()) for name in ("image", "ssp")}
    sky, sky_clutter = 0, {"image": 0, "ssp": 0}
    for frame in SyntheticVideo(scenario, frames=frames, seed=seed):  # not a training seed
        result = pipeline.process(frame.image, frame.stamp)
        sky += int(frame.sky.sum())
        for name, mask in (("image", result.image_mask), ("ssp", result.mask)):
            metrics[name].add(mask, frame.labels, frame.flow, frame.valid)
            sky_clutter[name] += int((mask[frame.sky] == CLUTTER).sum())
    out = {name: metrics[name].report() for name in metrics}
    for name in out:
        out[name]["sky_pixels"], out[name]["sky_as_clutter"] = sky, sky_clutter[name] / max(sky, 1)
    out["ssp"]["resets"] = sum(pipeline.propagator.resets.values())
    return out


@pytest.fixture(scope="module")
def results() -> dict:
    return run_flight(load_sim_config().synthetic)


@pytest.fixture(scope="module")
def oblique_results() -> dict:
    scenario = load_section(SyntheticConfig, share_dir() / "config" / "scenarios" / "oblique.yaml")
    return run_flight(replace(scenario, camera=replace(scenario.camera, pitch_deg=(70.0, 70.0))))  # horizon in view


def test_shipped_weights_are_small_and_describe_themselves() -> None:
    assert WEIGHTS.stat().st_size <= 10 * 1024 * 1024
    meta = read_weights_metadata(WEIGHTS)
    assert meta["kind"] == "ssp" and meta["backbone"] == load_config().model.backbone


@pytest.mark.slow
def test_ssp_is_more_consistent_and_no_less_accurate(results: dict) -> None:
    image, ssp = results["image"], results["ssp"]
    assert image["miou"] > 35.0, f"the image model itself regressed: {image['miou']}"  # 51.4 on 100 frames of this seed
    assert ssp["tc"] > image["tc"] + 5.0, f"TC {image['tc']} -> {ssp['tc']}"
    assert ssp["miou"] >= image["miou"] - 1.0, f"mIoU {image['miou']} -> {ssp['miou']}"
    assert ssp["flicker"] < image["flicker"]
    assert results["ssp"]["resets"] == 1, "registration should hold on the default flight (only the first frame)"


@pytest.mark.slow
def test_oblique_views_keep_the_gain_and_call_the_sky_clutter(oblique_results: dict) -> None:
    image, ssp = oblique_results["image"], oblique_results["ssp"]
    assert image["miou"] > 30.0, f"the image model regressed on oblique views: {image['miou']}"
    assert ssp["tc"] > image["tc"] + 5.0, f"TC {image['tc']} -> {ssp['tc']}"
    assert ssp["miou"] >= image["miou"] - 1.0, f"mIoU {image['miou']} -> {ssp['miou']}"
    assert ssp["flicker"] < image["flicker"]
    assert ssp["resets"] == 1, "registration should hold on an oblique flight (only the first frame)"
    assert image["sky_pixels"] > 0.05 * 40 * 368 * 640, "the flight should show the sky"
    for report in (image, ssp):
        assert report["sky_as_clutter"] > 0.95, f"sky labelled clutter only {report['sky_as_clutter']:.3f}"
