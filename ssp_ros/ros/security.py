"""SROS2 at start-up: what rcl and the rmw will make of the ``ROS_SECURITY_*`` variables, said in one line.

The rules are rcl's (``rcl/src/rcl/security.c`` and ``init.c``, the same in Humble and Jazzy):

- security is on only for ``ROS_SECURITY_ENABLE`` exactly ``true``; the strategy is Enforce only for
  ``ROS_SECURITY_STRATEGY`` exactly ``Enforce``, anything else is Permissive;
- the enclave is ``ROS_SECURITY_ENCLAVE_OVERRIDE`` when set and not empty, else the last ``--enclave`` (``-e``)
  ROS argument, else ``/``; its folder is ``<ROS_SECURITY_KEYSTORE>/enclaves/<enclave without the leading />``;
- without a keystore or without that folder, Enforce fails ``rcl_init`` (rclpy says only "failed to initialize
  rcl: error not set") and Permissive runs the node unsecured without a word;
- with the folder, the rmw builds a secured participant at the first node: it needs the six files of
  rmw_dds_common's ``get_security_files`` (Permissive runs unsecured without them, Enforce fails), and an rmw
  built without DDS-Security (the PyPI Fast DDS) refuses whatever the strategy.

``check`` says, before ``rclpy.init``, what would fail (one line for the caller to print) and warns on stderr
where the node would run unsecured; ``refusal`` turns the rmw's refusal at node creation into one line.
``check_dds`` does the same for ``ssp node --transport dds``: the cyclonedds wheel has no DDS-Security, so
Enforce refuses to start it and Permissive warns that it runs unsecured.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ENCLAVE_FLAGS = ("--enclave", "-e")
# rmw_dds_common get_security_files: the files a secured participant needs in the enclave folder (Jazzy's Fast DDS
# also takes a PKCS#11 URI in <name>.p11 for the four certificates and keys)
SECURITY_FILES = ("identity_ca.cert.pem", "cert.pem", "key.pem", "permissions_ca.cert.pem", "governance.p7s",
                  "permissions.p7s")
PKCS11_CAPABLE = SECURITY_FILES[:4]
STRATEGIES = ("", "Enforce", "Permissive")
TRUTHY = ("true", "1", "yes", "on")


@dataclass(frozen=True)
class Security:
    """The security set-up rcl reads from the environment and the ROS arguments."""

    enable: str  # ROS_SECURITY_ENABLE as given
    strategy: str  # ROS_SECURITY_STRATEGY as given
    keystore: str  # ROS_SECURITY_KEYSTORE, "" when unset
    enclave: str
    source: str  # where the enclave came from

    @property
    def enabled(self) -> bool:
        return self.enable == "true"

    @property
    def enforce(self) -> bool:
        return self.strategy == "Enforce"

    @property
    def folder(self) -> Path | None:
        """The enclave's folder (rcl's exact_match_lookup: the enclave less its first character under
        ``enclaves``), None without a keystore; it may not exist."""
        if not self.keystore:
            return None
        enclaves = Path(self.keystore, "enclaves")
        return enclaves if self.enclave == "/" else enclaves / self.enclave[1:]

    @property
    def secured(self) -> bool:
        """Whether rcl hands the rmw an enclave folder, so that the first node makes a secured participant."""
        return self.enabled and self.folder is not None and self.folder.is_dir()

    def missing_files(self) -> list[str]:
        """The security files the enclave folder lacks."""
        return [name for name in SECURITY_FILES if not (self.folder / name).is_file()
                and not (name in PKCS11_CAPABLE and (self.folder / name).with_suffix(".p11").is_file())]

    def describe(self) -> str:
        return f"enclave {self.enclave} ({self.source})"


def enclave_argument(args: Sequence[str]) -> str | None:
    """The last ``--enclave``/``-e`` value inside the ``--ros-args`` sections of ``args``, as rcl reads it."""
    enclave, in_ros_args = None, False
    for i, arg in enumerate(args):
        if arg == "--ros-args":
            in_ros_args = True
        elif arg == "--":
            in_ros_args = False
        elif in_ros_args and arg in ENCLAVE_FLAGS and i + 1 < len(args):
            enclave = args[i + 1]
    return enclave


def read(args: Sequence[str], environ: Mapping[str, str] = os.environ) -> Security:
    """The set-up rcl will use for a node started with ``args`` in ``environ``."""
    override, argument = environ.get("ROS_SECURITY_ENCLAVE_OVERRIDE", ""), enclave_argument(args)
    if override:
        enclave, source = override, "from ROS_SECURITY_ENCLAVE_OVERRIDE"
    elif argument is not None:
        enclave, source = argument, "from --enclave"
    else:
        enclave, source = "/", "the default: no --enclave given"
    return Security(environ.get("ROS_SECURITY_ENABLE", ""), environ.get("ROS_SECURITY_STRATEGY", ""),
                    environ.get("ROS_SECURITY_KEYSTORE", ""), enclave, source)


def invalid_enclave(args: Sequence[str]) -> str | None:
    """Why rcl would refuse the ``--enclave`` of ``args`` (it validates it as a namespace), None if it would not."""
    from rclpy.exceptions import InvalidNamespaceException
    from rclpy.validate_namespace import validate_namespace

    enclave = enclave_argument(args)
    if enclave is None:
        return None
    try:
        validate_namespace(enclave)
    except InvalidNamespaceException as err:
        reason = str(err).splitlines()[0].removeprefix("Invalid namespace: ").rstrip(":")
        return f"--enclave '{enclave}' is not a valid enclave name: {reason.replace('namespace', 'enclave')}"
    return None


def problems(setup: Security) -> tuple[str | None, str | None]:
    """(error, warning) for ``setup``: what rcl or the rmw would fail with, and how the node would run unsecured
    although ``ROS_SECURITY_*`` asks for security."""
    if not setup.enabled:
        if setup.enable.lower() in TRUTHY:
            return None, (f"ROS_SECURITY_ENABLE={setup.enable} is not 'true' (rcl compares exactly): security is "
                          "OFF, the node runs unsecured")
        return None, None
    odd = "" if setup.strategy in STRATEGIES else (f"ROS_SECURITY_STRATEGY={setup.strategy} is not 'Enforce' (rcl "
                                                   "compares exactly), so it is Permissive")
    unsecured = f"{odd or 'ROS_SECURITY_STRATEGY=Permissive'}: the node runs UNSECURED"
    enforced = "ROS_SECURITY_ENABLE=true and ROS_SECURITY_STRATEGY=Enforce, but"
    if setup.folder is None:
        if setup.enforce:
            return (f"{enforced} ROS_SECURITY_KEYSTORE is not set: set it to a keystore made by `ros2 security "
                    "create_keystore` (README, Security), or unset ROS_SECURITY_ENABLE"), None
        return None, (f"ROS_SECURITY_ENABLE=true but ROS_SECURITY_KEYSTORE is not set; {unsecured} (set the "
                      "keystore and an enclave, or ROS_SECURITY_STRATEGY=Enforce to refuse instead)")
    if not setup.folder.is_dir():
        where = f"{setup.describe()} has no folder {setup.folder}"
        if setup.enforce:
            return (f"{enforced} {where}: create it with `ros2 security create_enclave {setup.keystore} "
                    f"{setup.enclave}` (README, Security), or name an enclave the keystore has"), None
        return None, (f"ROS_SECURITY_ENABLE=true but {where}; {unsecured} (create the enclave, or "
                      "ROS_SECURITY_STRATEGY=Enforce to refuse instead)")
    missing = setup.missing_files()
    if missing:
        where = f"{setup.describe()}: {setup.folder} lacks {', '.join(missing)}"
        if setup.enforce:
            return (f"{enforced} {where}: make them with `ros2 security create_enclave` and `ros2 security "
                    "create_permission` (README, Security)"), None
        return None, (f"ROS_SECURITY_ENABLE=true but {where}; {odd or 'ROS_SECURITY_STRATEGY=Permissive'}: an rmw "
                      "with DDS-Security runs the node UNSECURED")
    return None, odd or None


def check(args: Sequence[str], prog: str = "ssp_node", environ: Mapping[str, str] = os.environ) -> str | None:
    """Before ``rclpy.init``: the one-line error the node must stop with (None if it may start); warns on stderr
    where it would run unsecured. Where the first node is to make a secured participant, rclpy's warning about
    the node the rmw refused is silenced: ``refusal`` says why in one line."""
    invalid = invalid_enclave(args)
    if invalid is not None:
        return invalid
    setup = read(args, environ)
    error, warning = problems(setup)
    if warning is not None:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    if error is None and setup.secured:
        warnings.filterwarnings("ignore", "Failed to fini rosout publisher", RuntimeWarning)
    return error


def refusal(err: BaseException, args: Sequence[str], environ: Mapping[str, str] = os.environ) -> str | None:
    """One line for ``err`` when it is the rmw refusing the first node's secured participant (e.g. "This Fast DDS
    version doesn't have the security libraries"); None for any other error."""
    from rclpy.utilities import get_rmw_implementation_identifier

    setup = read(args, environ)
    text = str(err)
    if not setup.secured or "security" not in text.lower():
        return None
    reason = text.splitlines()[0].removeprefix("error creating node: ").split(", at /")[0]
    return (f"ROS_SECURITY_ENABLE=true but {get_rmw_implementation_identifier()} cannot make a secured participant "
            f"for {setup.describe()}: {reason}; run on a ROS 2 whose DDS has DDS-Security (ROS 2 from apt or "
            "source; the PyPI wheels of Fast DDS have none), or unset ROS_SECURITY_ENABLE")


def check_dds(prog: str = "ssp node", environ: Mapping[str, str] = os.environ) -> str | None:
    """``check`` for the Cyclone DDS transport, which secures nothing: the one-line error with Enforce; a warning on
    stderr with Permissive; None and no warning with security off."""
    setup = read([], environ)
    if not setup.enabled:
        return None
    cause = "ROS_SECURITY_ENABLE=true but --transport dds (the cyclonedds wheel) has no DDS-Security"
    if setup.enforce:
        return (f"{cause}, and ROS_SECURITY_STRATEGY=Enforce: run the rclpy node (ssp_node) on a ROS 2 whose DDS "
                "has DDS-Security, or unset ROS_SECURITY_ENABLE")
    print(f"{prog}: warning: {cause}; Permissive: the node runs UNSECURED", file=sys.stderr)
    return None
