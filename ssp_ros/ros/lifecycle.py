"""The managed (lifecycle) segmentation node: ``ssp_node --lifecycle``, or ``lifecycle:=true`` in the launch.

ROS 2's managed-node states (design.ros2.org "Managed nodes"), driven through the node's lifecycle services
(``ros2 lifecycle set /ssp configure``):

- *unconfigured*: parameters are declared (and validated), nothing is loaded; ``~/reset`` answers that there
  is nothing to reset;
- **configure** loads the model or engine and creates the (lifecycle) publishers and ``~/label_info`` →
  *inactive*;
- **activate** subscribes to the camera; outputs flow → *active* (a bad QoS override of the camera topic
  fails it, logged, and the node stays inactive);
- **deactivate** unsubscribes, lets the frame in flight finish and drops the propagation state; nothing is
  published → *inactive*;
- **cleanup** stops the threads, destroys publishers and services and frees the model → *unconfigured*;
- **shutdown** works from any of these states (cleans up first when configured).

Parameter changes are accepted in every state: applied in flight when configured, else validated and kept for
the next configure. A failing configure (a missing engine file, a bad config) answers FAILURE with the reason
logged, and the node stays unconfigured, ready for another try; anything a transition raises is logged before
rclpy's error processing (which says nothing itself) releases everything. This module imports rclpy at the top: only
``main`` imports it, and only when ``--lifecycle`` is given.
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from ssp_ros.config import SspConfig
from ssp_ros.errors import SspError
from ssp_ros.ros.node import NODE_NAME, SegmentationNode
from ssp_ros.ros.params import check_dynamic, config_with_params
from ssp_ros.ros.rclpy_transport import (
    RclpyTransport,
    add_parameter_callback,
    create_reset_service,
    cv_bridge_fallback,
    declare_parameters,
    publish_label_info,
)
from ssp_ros.ros.stabilise_node import make_node


def _logged(transition: Callable[..., TransitionCallbackReturn]) -> Callable[..., TransitionCallbackReturn]:
    """Log what a transition raises before rclpy turns it into ERROR without a word (it logs nothing)."""
    @functools.wraps(transition)
    def run(self: LifecycleSegmentationNode, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return transition(self, state)
        except Exception as err:
            self.get_logger().error(f"{transition.__name__} raised {err!r}; the node goes to error processing")
            raise

    return run


class LifecycleSegmentationNode(LifecycleNode):
    """The segmentation node as a managed node; ``segmenter`` is None while unconfigured."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.cfg: SspConfig = declare_parameters(self)  # a bad launch value fails here, before any transition
        self.segmenter: SegmentationNode | None = None
        self._label_info: Any = None
        add_parameter_callback(self, self._reconfigure)
        # made once and bound to this node, not to the pipeline: nothing the executor holds keeps a model alive
        create_reset_service(self, self._reset)

    def _reconfigure(self, values: dict[str, Any]) -> SspConfig:
        if self.segmenter is not None:
            self.cfg = self.segmenter.processor.reconfigure(values)
        else:
            check_dynamic(list(values))
            self.cfg = config_with_params(self.cfg, values)
        return self.cfg

    def _reset(self) -> str | None:
        if self.segmenter is None:
            return "unconfigured: there is no propagation state to reset"
        self.segmenter.processor.reset()
        return None

    @property
    def failure(self) -> BaseException | None:
        """What stopped the worker, if one ran and died (``main`` exits non-zero on it)."""
        return None if self.segmenter is None else self.segmenter.failure

    @_logged
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.segmenter = make_node(RclpyTransport(self), self.cfg, fallback=cv_bridge_fallback(), active=False)
        except SspError as err:
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        classes = self.segmenter.classes
        if classes is not None:  # None: they come from the other segmenter's LabelInfo, which describes ours too
            self._label_info = publish_label_info(self, classes)
        self.get_logger().info(f"configured: {self.segmenter.hardware_id}, " + (
            f"{classes.num_classes} classes" if classes is not None else "classes from the other segmenter's "
            f"LabelInfo on {self.segmenter.label_info_topic}"))
        return super().on_configure(state)

    @_logged
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers first
        try:
            self.segmenter.activate()
        except SspError as err:  # a bad QoS override of the camera topic: stay inactive, say why
            self.get_logger().error(f"activate failed: {err}")
            super().on_deactivate(state)
            return TransitionCallbackReturn.FAILURE
        return result

    @_logged
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.segmenter.deactivate()
        self.get_logger().info("deactivated: the propagation state is dropped")
        return super().on_deactivate(state)

    def close(self) -> None:
        """Release what configure made, and the model with it: the segmentation node closes its backend (a
        TensorRT engine's GPU memory and CUDA context) and the last reference to the pipeline goes here;
        idempotent: cleanup, shutdown, error and the process's exit all call it."""
        if self.segmenter is not None:
            self.segmenter.close()
            self.segmenter = None
        if self._label_info is not None:
            self.destroy_publisher(self._label_info)
            self._label_info = None
        gc.collect()  # the backend's tensors or engine go now, not at some later collection
        torch = sys.modules.get("torch")  # only if a torch backend loaded it; never imported here
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.empty_cache()  # hand torch's cached CUDA blocks back to the device, for other processes

    @_logged
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        self.get_logger().info("cleaned up: the model is freed")
        return super().on_cleanup(state)

    @_logged
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition from {state.label} raised; releasing everything")
        self.close()
        return super().on_error(state)
