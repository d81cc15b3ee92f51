"""The RViz layout for one camera's node: ``config/ssp.rviz`` with the node's topics moved under a namespace.

``ros2 launch ssp_ros ssp.launch.py ns:=left use_rviz:=true`` opens RViz on ``/left/ssp/overlay`` and
``/left/ssp/mask``; ``ns:=right`` on the right camera's. The launch file writes the rewritten layout to a
file and passes it to ``rviz2 -d``. Only PyYAML here: the launch file imports this module.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml


def namespaced_layout(template: str, namespace: str, node_name: str) -> str:
    """``template`` (RViz YAML) with every display topic of the node (``/<node_name>/...``) under
    ``/<namespace>``."""
    layout = yaml.safe_load(template)
    prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
    for display in layout["Visualization Manager"]["Displays"]:
        topic = display.get("Topic")
        if isinstance(topic, dict) and str(topic.get("Value", "")).startswith(f"/{node_name}/"):
            topic["Value"] = prefix + topic["Value"]
    return yaml.safe_dump(layout, sort_keys=False)


def layout_for(template: Path, namespace: str, node_name: str) -> Path:
    """The layout file for ``namespace``: ``template`` itself without one, else a rewritten copy in the temp dir."""
    if not namespace.strip("/"):
        return template
    name = namespace.strip("/").replace("/", "_")
    with tempfile.NamedTemporaryFile("w", prefix=f"ssp_{name}_", suffix=".rviz", delete=False) as out:
        out.write(namespaced_layout(template.read_text(), namespace, node_name))  # one file per launch and user
    return Path(out.name)
