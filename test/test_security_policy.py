"""config/security/policy.xml, the node's SROS2 policy: its structure (sros2's policy.xsd, version 0.2.0; the real
schema where sros2 is installed) and the enclaves the launch file and README name. test_rclpy_security_policy.py
checks each enclave against the real node's graph."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "config" / "security" / "policy.xml"
ENCLAVES = {"plain": "/ssp", "lifecycle": "/ssp_lifecycle"}  # how the node runs → its enclave (README, launch)
PERMISSIONS = {"topics": ("publish", "subscribe"), "services": ("reply", "request"), "actions": ("call", "execute")}


def resolve(name: str, ns: str, node: str) -> str:
    """A policy name as sros2's permissions.xsl resolves it in its profile: absolute as is, ``~`` under the node,
    anything else under the namespace."""
    if name.startswith("/"):
        return name
    prefix = ns if ns.endswith("/") else f"{ns}/"
    return f"{prefix}{node}{name[1:]}" if name.startswith("~") else f"{prefix}{name}"


def grants(enclave: str) -> dict[str, set[str]]:
    """What the policy allows ``enclave``, by permission (publish, subscribe, reply, request), names resolved."""
    (element,) = [e for e in ET.parse(POLICY).getroot().iter("enclave") if e.get("path") == enclave]
    allowed: dict[str, set[str]] = defaultdict(set)
    for profile in element.iter("profile"):
        for rule in profile:
            for permission, value in rule.attrib.items():
                assert value == "ALLOW", f"{enclave}: {rule.tag} {permission}={value}: the policy only allows"
                allowed[permission] |= {resolve(e.text.strip(), profile.get("ns"), profile.get("node")) for e in rule}
    return dict(allowed)


def test_policy_has_the_structure_of_sros2s_schema() -> None:
    """policy.xsd (sros2, humble and rolling alike): <policy version="0.2.0"><enclaves><enclave path><profiles>
    <profile ns node> of <topics publish|subscribe>, <services reply|request>, <actions call|execute>, each of
    one or more names, ALLOW or DENY. Checked by hand here (no lxml, no sros2); the next test uses the schema."""
    root = ET.parse(POLICY).getroot()
    assert root.tag == "policy" and root.attrib == {"version": "0.2.0"}
    assert [child.tag for child in root] == ["enclaves"]
    paths = []
    for enclave in root.find("enclaves"):
        assert enclave.tag == "enclave" and set(enclave.attrib) == {"path"}
        paths.append(enclave.get("path"))
        assert [child.tag for child in enclave] == ["profiles"] and not enclave.find("profiles").attrib
        profiles = list(enclave.find("profiles"))
        assert profiles and all(p.tag == "profile" and set(p.attrib) == {"ns", "node"} for p in profiles)
        for rule in (rule for profile in profiles for rule in profile):
            assert rule.tag in PERMISSIONS and rule.attrib, rule.tag
            assert set(rule.attrib) <= set(PERMISSIONS[rule.tag]) and set(rule.attrib.values()) <= {"ALLOW", "DENY"}
            assert len(rule) > 0 and all(e.tag == rule.tag[:-1] and e.text.strip() for e in rule), rule.tag
    assert sorted(paths) == sorted(ENCLAVES.values())


def test_sros2_validates_the_policy_and_makes_dds_permissions_for_each_enclave() -> None:
    """Where sros2 is installed (ROS 2 with ros-<distro>-sros2): its own loader validates the file against
    policy.xsd, and each enclave turns into DDS permissions that validate against its permissions.xsd, as
    ``ros2 security create_permission`` does it."""
    policy = pytest.importorskip("sros2.policy", reason="sros2 is not installed: the structure test stands in")
    from lxml import etree  # sros2's own dependency
    from sros2.api._policy import get_policy_from_tree

    tree = policy.load_policy(POLICY)
    to_permissions = etree.XSLT(etree.parse(str(policy.get_transport_template("dds", "permissions.xsl"))))
    schema = etree.XMLSchema(etree.parse(str(policy.get_transport_schema("dds", "permissions.xsd"))))
    for enclave in ENCLAVES.values():
        permissions = to_permissions(get_policy_from_tree(enclave, tree))
        schema.assertValid(permissions)
        topics = {topic.text for topic in permissions.iter("topic")}
        assert {"rt/ssp/mask", "rq/ssp/resetRequest", "rr/ssp/resetReply", "rt/camera/image_raw"} <= topics


def test_launch_file_and_readme_name_the_policys_enclaves() -> None:
    launch = (ROOT / "launch" / "ssp.launch.py").read_text()
    readme = (ROOT / "README.md").read_text()
    for enclave in ENCLAVES.values():
        assert enclave in launch and f"enclave:={enclave}" in readme, enclave
