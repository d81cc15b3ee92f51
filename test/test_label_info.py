"""Another segmenter's class list from its vision_msgs/LabelInfo (ssp_ros/ros/label_info.py): messages built with
rosbags from the definitions the DDS transport registers, and through their CDR bytes."""

from __future__ import annotations

import pytest
from rosbags.typesys import Stores, get_typestore

from ssp_ros.errors import FrameError
from ssp_ros.ros.dds_transport import vision_types
from ssp_ros.ros.label_info import BAD_LABEL_INFO, LABEL_INFO, class_set_from_label_info

TOPIC = "/segmenter/label_info"
TS = get_typestore(Stores.ROS2_HUMBLE)
TS.register(vision_types())
T = TS.types


def label_info(entries: list[tuple[int, str]]):
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=3, nanosec=0), frame_id="")
    return T[LABEL_INFO](header=header, threshold=0.5,
                         class_map=[T["vision_msgs/msg/VisionClass"](class_id=i, class_name=n) for i, n in entries])


def test_a_class_map_gives_k_names_and_colours_through_cdr() -> None:
    msg = label_info([(0, "sky"), (1, "road"), (2, "car")])
    msg = TS.deserialize_cdr(TS.serialize_cdr(msg, LABEL_INFO), LABEL_INFO)  # what a transport delivers
    classes = class_set_from_label_info(msg, TOPIC)
    assert classes.names == ("sky", "road", "car") and classes.num_classes == 3
    assert len(set(classes.colors)) == 3 and classes.ignore_index == 255 and TOPIC in classes.name


def test_skipped_ids_are_unnamed_classes_and_the_unlabelled_id_is_no_class() -> None:
    classes = class_set_from_label_info(label_info([(5, "car"), (0, "ground"), (255, "unlabeled")]), TOPIC)
    assert classes.names == ("ground", "class_1", "class_2", "class_3", "class_4", "car")
    wide = class_set_from_label_info(label_info([(0, "a"), (1, ""), (65535, "unlabeled")]), TOPIC)
    assert wide.names == ("a", "class_1")
    # 255 is vision_msgs' unlabelled id only for fewer than 255 classes: 256 of them make it a class
    full = class_set_from_label_info(label_info([(i, f"c{i}") for i in range(256)] + [(65535, "u")]), TOPIC)
    assert full.num_classes == 256 and full.names[255] == "c255"


@pytest.mark.parametrize(("entries", "problem"), [
    ([], "class_map names no class"),
    ([(255, "unlabeled")], "only unlabelled ids: 255"),
    ([(65535, "unlabeled"), (255, "u8")], "only unlabelled ids: 255, 65535"),
    ([(0, "a"), (1, "b"), (1, "c")], "class_id 1 appears twice"),
    ([(0, "a"), (300, "b")], "class_id 300 means 301 classes; the stabiliser takes at most 256"),
    ([(0, "a")], "one class (id 0) leaves nothing to stabilise"),
])
def test_an_unusable_class_map_is_refused_naming_topic_and_problem(entries, problem) -> None:
    with pytest.raises(FrameError, match=f"LabelInfo on {TOPIC}: .*{problem}".replace("(", r"\(").replace(")", r"\)")
                       ) as err:
        class_set_from_label_info(label_info(entries), TOPIC)
    assert err.value.reason == BAD_LABEL_INFO
