"""Another segmenter's class list from its ``vision_msgs/LabelInfo`` (stabilise mode's ``node.label_info_topic``).

A LabelInfo carries ``class_map``, a list of (``class_id`` uint16, ``class_name``) pairs, and is latched (transient
local) by the pipeline that publishes it. vision_msgs reserves the largest id for "unlabelled": 65535, or 255 for a
pipeline of fewer than 255 classes; those are the stabiliser's unknown labels (``VOID_16``, ``VOID``), so a map
entry for them is no class. The other ids give K = the largest + 1, and an id the map skips is a class without a
name (``class_<id>``).
Messages are read by duck typing (rclpy's and rosbags' classes alike). ``DEFINITIONS`` are the two message
definitions (the fields of vision_msgs 4.1, the version Humble ships) for transports that build their own types.
"""

from __future__ import annotations

from typing import Any

from ssp_ros.classes import ClassSet, numbered_class_set
from ssp_ros.ros.images import MessageError
from ssp_ros.stabiliser import MAX_CLASSES, VOID, VOID_16

LABEL_INFO = "vision_msgs/msg/LabelInfo"
DEFINITIONS = {
    "vision_msgs/msg/VisionClass": "uint16 class_id\nstring class_name\n",
    LABEL_INFO: "std_msgs/Header header\nvision_msgs/VisionClass[] class_map\nfloat32 threshold\n",
}
BAD_LABEL_INFO = "class list refused"  # the reason counted for a LabelInfo that gives no usable class list


def class_set_from_label_info(msg: Any, topic: str) -> ClassSet:
    """The ClassSet of a LabelInfo received on ``topic``: ids 0..K−1 named by ``class_map``, colours as
    ``numbered_class_set``'s. ``MessageError`` (reason ``BAD_LABEL_INFO``) names the problem: no class, an id
    twice, more than ``MAX_CLASSES`` classes."""
    names: dict[int, str] = {}
    try:
        entries = [(int(entry.class_id), str(entry.class_name)) for entry in msg.class_map]
    except (AttributeError, TypeError, ValueError) as err:
        raise MessageError(BAD_LABEL_INFO, f"LabelInfo on {topic}: class_map is not a list of VisionClass "
                                           f"(class_id, class_name): {err}") from None
    for class_id, name in entries:
        if class_id in names:
            raise MessageError(BAD_LABEL_INFO, f"LabelInfo on {topic}: class_id {class_id} appears twice in "
                                               f"class_map ({names[class_id]!r} and {name!r})")
        names[class_id] = name
    others = set(names) - {VOID, VOID_16}
    unlabeled = {VOID_16} | ({VOID} if len(others) < VOID else set())  # 255 is a class of a 256-class pipeline
    classes = {class_id: name for class_id, name in names.items() if class_id not in unlabeled}
    if not classes:
        raise MessageError(BAD_LABEL_INFO, f"LabelInfo on {topic}: class_map names no class"
                                           + (f" (only unlabelled ids: {', '.join(map(str, sorted(names)))})"
                                              if names else ""))
    k = max(classes) + 1
    if k > MAX_CLASSES:
        raise MessageError(BAD_LABEL_INFO, f"LabelInfo on {topic}: class_id {max(classes)} means {k} classes; the "
                                           f"stabiliser takes at most {MAX_CLASSES}")
    if k < 2:
        raise MessageError(BAD_LABEL_INFO, f"LabelInfo on {topic}: one class (id 0) leaves nothing to stabilise")
    numbered = numbered_class_set(k)
    return ClassSet(name=f"LabelInfo on {topic}", names=tuple(classes.get(i) or f"class_{i}" for i in range(k)),
                    colors=numbered.colors, ignore_index=numbered.ignore_index)
