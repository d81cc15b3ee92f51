import numpy as np
import pytest
import torch

from ssp_ros.backends.torch_backend import TorchBackend
from ssp_ros.config import ModelConfig, PropagationConfig, RegistrationConfig, SspConfig
from ssp_ros.errors import FrameError, SspError
from ssp_ros.letterbox import Letterbox
from ssp_ros.models import build_ssp
from ssp_ros.pipeline import STAGES, Pipeline
from ssp_ros.propagation import FIRST_FRAME, REGISTRATION_FAILED, RESOLUTION_CHANGED, TIME_GAP

INPUT = (96, 160)


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    torch.manual_seed(0)
    return TorchBackend(build_ssp(ModelConfig(input_size=INPUT), 8), INPUT)


def pipeline(backend: TorchBackend, **propagation) -> Pipeline:
    return Pipeline(SspConfig(propagation=PropagationConfig(**propagation)), backend)


def test_fuses_consecutive_synthetic_frames(backend, small_video) -> None:
    pipe = pipeline(backend)
    results = [pipe.process(f.image, f.stamp, with_similarity=True) for f in small_video[:6]]
    assert results[0].reset_reason == FIRST_FRAME and results[0].similarity is None
    assert all(r.fused for r in results[1:]), [r.reset_reason for r in results]
    last = results[-1]
    assert last.mask.shape == last.confidence.shape == last.similarity.shape == (120, 200)
    assert last.mask.dtype == np.uint8 and last.mask.max() < 8
    assert set(STAGES) <= set(last.timings_ms) and last.timings_ms["total"] > 0
    unasked = pipeline(backend)
    assert all(unasked.process(f.image, f.stamp).similarity is None for f in small_video[:3])


@pytest.mark.parametrize("size", [(481, 853), (120, 200), (97, 31)])
def test_mask_has_the_frame_size_for_any_size(backend, size: tuple[int, int]) -> None:
    frame = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    result = pipeline(backend).process(frame, 0.0)
    assert result.mask.shape == result.confidence.shape == size


def test_letterbox_maps_homographies_consistently() -> None:
    box = Letterbox((481, 853), (96, 160))
    assert box.content_size == (90, 160)
    shift = np.array([[1.0, 0, 8.53], [0, 1.0, 0], [0, 0, 1.0]])  # 8.53 camera px = 1.6 input px
    np.testing.assert_allclose(box.homography_to_input(shift)[0, 2], 8.53 * 160 / 853, rtol=1e-6)


def test_resets_are_counted_not_raised(backend, small_video) -> None:
    pipe = pipeline(backend, max_time_gap_s=0.5)
    a, b = small_video[0], small_video[1]
    pipe.process(a.image, 0.0)
    blank = np.full_like(b.image, 128)
    assert pipe.process(blank, 0.033).reset_reason == REGISTRATION_FAILED
    assert pipe.process(b.image, 2.0).reset_reason == TIME_GAP
    small = np.ascontiguousarray(b.image[:60, :100])
    assert pipe.process(small, 2.033).reset_reason == RESOLUTION_CHANGED
    assert pipe.propagator.resets == {FIRST_FRAME: 1, REGISTRATION_FAILED: 1, TIME_GAP: 1, RESOLUTION_CHANGED: 1}


@pytest.mark.parametrize("frame, message", [
    (np.zeros((0, 10, 3), np.uint8), "too small"),
    (np.zeros((50, 60), np.uint8), r"H×W×3 RGB, got shape \(50, 60\)"),
    (np.zeros((50, 60, 4), np.uint8), r"got shape \(50, 60, 4\)"),
    (np.zeros((50, 60, 3), np.float32), "must be uint8, got dtype float32"),
    ("not an image", "numpy array"),
])
def test_bad_frames_raise_one_clear_error(backend, frame, message: str) -> None:
    pipe = pipeline(backend)
    with pytest.raises(FrameError, match=message):
        pipe.process(frame, 0.0)
    assert pipe.propagator.state is None, "a bad frame leaves the state untouched"


def test_image_model_mode_skips_registration(backend, small_video) -> None:
    pipe = pipeline(backend, enabled=False)
    results = [pipe.process(f.image, f.stamp) for f in small_video[:3]]
    assert not any(r.fused for r in results) and all(r.registration is None for r in results)


def test_reconfigure_takes_effect_at_the_next_frame(backend, small_video) -> None:
    """``Pipeline.reconfigure`` is the one way in: thresholds apply to the next frame, a detector change starts
    the keypoints over, and the pipeline's config reflects what runs."""
    pipe = pipeline(backend)
    frames = small_video[:5]
    assert pipe.process(frames[0].image, frames[0].stamp).reset_reason == FIRST_FRAME
    assert pipe.process(frames[1].image, frames[1].stamp).fused
    pipe.reconfigure(registration=RegistrationConfig(min_inliers=10_000))
    assert pipe.process(frames[2].image, frames[2].stamp).reset_reason == REGISTRATION_FAILED
    assert pipe.registrar.cfg.min_inliers == pipe.cfg.registration.min_inliers == 10_000
    pipe.reconfigure(registration=RegistrationConfig(), propagation=PropagationConfig(max_time_gap_s=0.001))
    assert pipe.process(frames[3].image, frames[3].stamp).reset_reason == TIME_GAP
    assert pipe.cfg.propagation.max_time_gap_s == pipe.propagator.cfg.max_time_gap_s == 0.001
    pipe.reconfigure(registration=RegistrationConfig(detector="sift"), propagation=PropagationConfig())
    assert pipe.cfg.registration.detector == "sift" and pipe.registrar.cfg.detector == "orb", \
        "staged: the stages switch between frames, in the thread that runs them"
    result = pipe.process(frames[4].image, frames[4].stamp)
    assert pipe.registrar.cfg.detector == "sift"
    assert result.reset_reason == REGISTRATION_FAILED and result.registration.reason == "first frame", \
        "keypoints of another detector cannot be matched: the registrar starts over"


def test_a_refused_reconfigure_changes_nothing(backend, monkeypatch) -> None:
    pipe = pipeline(backend)
    before = pipe.cfg

    def refuse(cfg):
        raise SspError("registration.detector: the detector cannot be made")

    monkeypatch.setattr("ssp_ros.pipeline.Detector", refuse)
    with pytest.raises(SspError, match="cannot be made"):
        pipe.reconfigure(propagation=PropagationConfig(max_time_gap_s=2.0),
                         registration=RegistrationConfig(detector="sift"))
    assert pipe.cfg == before and pipe._pending is None


def test_a_reconfigure_landing_mid_frame_waits_for_the_next_frame(backend, small_video) -> None:
    """The ROS parameter callback runs in its own thread, so a detector change can land while the worker is
    half-way through a frame. Simulated deterministically: the change arrives right after this frame's
    keypoints were detected. The frame finishes on the old settings, the next one starts cleanly on the new
    (applied immediately, ORB keypoints would be kept as the previous frame of a SIFT registrar)."""
    pipe = pipeline(backend)
    frames = small_video[:3]
    pipe.process(frames[0].image, frames[0].stamp)
    detect = pipe.registrar.features

    def detect_then_change(frame):
        found = detect(frame)
        pipe.reconfigure(registration=RegistrationConfig(detector="sift"))  # "the other thread"
        return found

    pipe.registrar.features = detect_then_change
    assert pipe.process(frames[1].image, frames[1].stamp).fused, "this frame runs on ORB to the end"
    pipe.registrar.features = detect
    result = pipe.process(frames[2].image, frames[2].stamp)
    assert pipe.registrar.cfg.detector == "sift" and result.registration.reason == "first frame"


class _Backend:
    """The torch backend with hooks around ``segment``: ``before`` runs first, ``fail_at`` raises on that call."""

    def __init__(self, inner: TorchBackend, before=None, fail_at: int | None = None) -> None:
        self.inner, self.before, self.fail_at, self.calls = inner, before, fail_at, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def segment(self, image):
        self.calls += 1
        if self.before is not None:
            self.before()
        if self.calls == self.fail_at:
            raise SspError("the segmenter failed on this frame")
        return self.inner.segment(image)


def test_registration_runs_beside_the_segmenter(backend, small_video) -> None:
    """The registrar's work is under way in its own thread while the segmenter runs: the segmenter waits here
    until registration has started, which a sequential pipeline would never let happen."""
    import threading

    from ssp_ros.registration import FrameRegistrar

    started = threading.Event()
    prepare = FrameRegistrar.prepare

    def watched(self, frame):
        assert threading.current_thread().name.startswith("ssp_registration")
        started.set()
        return prepare(self, frame)

    def segment_waits_for_registration() -> None:
        assert started.wait(10.0), "registration did not run while the segmenter did"
        started.clear()

    pipe = Pipeline(SspConfig(), _Backend(backend, before=segment_waits_for_registration))
    pipe.registrar.prepare = watched.__get__(pipe.registrar)
    results = [pipe.process(f.image, f.stamp) for f in small_video[:4]]
    assert all(r.fused for r in results[1:])


def test_registration_time_is_measured_in_its_own_thread(backend, small_video) -> None:
    """``registration_ms`` is what registration took beside the segmenter; the ``registration`` stage is only the
    frame's wait for it. Here registration takes at least 50 ms and is done before the segmenter returns, so the
    thread's time holds those 50 ms and the wait does not."""
    import threading
    import time

    from ssp_ros.registration import FrameRegistrar

    done = threading.Event()
    prepare = FrameRegistrar.prepare

    def slow(self, frame):
        time.sleep(0.05)
        try:
            return prepare(self, frame)
        finally:
            done.set()

    def segment_after_registration() -> None:
        assert done.wait(30.0), "registration did not finish"
        done.clear()

    pipe = Pipeline(SspConfig(), _Backend(backend, before=segment_after_registration))
    pipe.registrar.prepare = slow.__get__(pipe.registrar)
    for frame in small_video[:3]:
        result = pipe.process(frame.image, frame.stamp)
        assert result.registration_ms >= 50.0 > result.timings_ms["registration"], result.timings_ms
    assert pipeline(backend, enabled=False).process(small_video[0].image, 0.0).registration_ms is None


def test_the_image_mask_kept_beside_ssp_is_the_image_models(backend, small_video) -> None:
    """``keep_image_mask``: each frame's mask before fusion, the same as a pipeline with propagation off gives, while
    the SSP output itself is untouched by keeping it."""
    keeping = Pipeline(SspConfig(), backend, keep_image_mask=True)
    plain, image_only = pipeline(backend), pipeline(backend, enabled=False)
    for frame in small_video[:5]:
        kept = keeping.process(frame.image, frame.stamp)
        np.testing.assert_array_equal(kept.image_mask, image_only.process(frame.image, frame.stamp).mask)
        np.testing.assert_array_equal(kept.mask, plain.process(frame.image, frame.stamp).mask)
        assert kept.fused == (frame is not small_video[0])
    assert not np.array_equal(kept.image_mask, kept.mask), "fusion changed nothing: the test shows nothing"
    assert plain.process(small_video[5].image, small_video[5].stamp).image_mask is None


def test_registration_beside_the_segmenter_gives_the_sequential_homographies(backend, small_video) -> None:
    """Frame for frame the same registrations as a registrar run in sequence; and a frame whose segmenter
    fails is never the reference of the next (the next frame registers to the one before it)."""
    from ssp_ros.registration import FrameRegistrar

    frames = small_video[:8]
    pipe = Pipeline(SspConfig(), _Backend(backend, fail_at=5))
    got = {}
    for i, f in enumerate(frames):
        try:
            got[i] = pipe.process(f.image, f.stamp).registration
        except SspError:
            assert i == 4
    sequential = FrameRegistrar(SspConfig().registration)
    for i, f in enumerate(frames):
        if i == 4:
            continue  # never segmented: never registered
        want = sequential.register(f.image)
        assert got[i].ok == want.ok and got[i].inliers == want.inliers, i
        if want.ok:
            np.testing.assert_array_equal(got[i].homography, want.homography)


class _QueuedBackend(_Backend):
    """A backend that queues its work like a GPU: ``segment``/``fuse`` return at once, the work (a sleep) is
    done by ``synchronize`` or by the first call that needs its result (``labels``, ``similarity``)."""

    WORK_S = {"segment": 0.15, "fuse": 0.1}

    def __init__(self, inner: TorchBackend) -> None:
        super().__init__(inner)
        self.pending = 0.0

    def segment(self, image):
        self.pending += self.WORK_S["segment"]
        return self.inner.segment(image)

    def fuse(self, *args):
        self.pending += self.WORK_S["fuse"]
        return self.inner.fuse(*args)

    def synchronize(self) -> None:
        import time

        time.sleep(self.pending)
        self.pending = 0.0

    def labels(self, logits):
        self.synchronize()
        return self.inner.labels(logits)


def test_each_stage_is_timed_with_its_gpu_work(backend, small_video) -> None:
    """The segmenter's and the fusion's queued work is timed in their own stages, not in the next stage that
    waits for it (the pipeline synchronises the backend before stopping their clocks)."""
    pipe = Pipeline(SspConfig(), _QueuedBackend(backend))
    pipe.process(small_video[0].image, small_video[0].stamp)
    result = pipe.process(small_video[1].image, small_video[1].stamp)
    assert result.fused
    timings = result.timings_ms
    assert timings["segmenter"] >= 150.0 and timings["fusion"] >= 100.0
    assert timings["postprocess"] < 200.0, timings  # without the synchronise calls: >= 250 ms of queued work
