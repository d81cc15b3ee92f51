"""Write the versions installed in this Python environment into constraints.txt (or the file named as the one
argument: constraints-kilted.txt from the ROS 2 Kilted venv of `.ci/kilted`), for this Python and machine.

constraints.txt pins every package CI last passed with, so that `pip install` on a fresh machine gets the same
versions and a release elsewhere cannot turn main red. Each line carries an environment marker for the Python
(implementation, minor version) and machine (OS, architecture) it was tested on; pip skips lines whose marker
does not match, so another Python or machine installs the newest versions setup.py admits until someone
refreshes the pins there. Running this replaces the lines of this Python and machine and keeps the others.
`.ci/refresh-constraints` calls it after the suite passed on the newest versions; run it directly only in a
venv that just passed the suite. Kilted's ROS wheels pull in the same package names as Jazzy's (``ros-rclpy``,
``ros-rcl``, ...) at other versions, and a marker cannot tell the two venvs apart, so Kilted has a file of its own.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """\
# Versions the test suite last passed with (pip constraints: `pip install -c {name} ...`, or
# PIP_CONSTRAINT={name} so that build environments use them too). Written by .ci/constraints.py;
# refresh with `bash .ci/refresh-constraints` (newest versions, full suite, then these pins). One block per
# Python and machine (implementation, version, OS, architecture); pip ignores the lines whose marker does not match.
"""
FILES = {"constraints.txt": "",  # the README's venv: the `test` extra, ROS 2 Jazzy's wheels
         "constraints-kilted.txt": "# The ROS 2 Kilted venv of .ci/kilted: its ROS wheels pull in Jazzy's package "
                                   "names (ros-rclpy, ...) at other versions.\n"}
SKIP = {"pip", "ssp-ros"}  # pip itself, and this package (installed editable)


def marker() -> str:
    """The environment marker for this interpreter (implementation, minor version) and machine (OS, architecture):
    wheels differ by all four (torch has no macOS x86_64 wheels of current releases, for one)."""
    return (f'platform_python_implementation == "{platform.python_implementation()}" and '
            f'python_version == "{sys.version_info.major}.{sys.version_info.minor}" and '
            f'sys_platform == "{sys.platform}" and platform_machine == "{platform.machine()}"')


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> list[str]:
    """``name==version`` for every package of this environment (``pip freeze --all``, editable ones left out).

    The ROS 2 wheels (``ros-rclpy``) also install their ament package's own metadata (``rclpy``), which pip lists
    but no requirement names: those are left out."""
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"], check=True,
                         capture_output=True, text=True).stdout
    pins = {canonical(line.split("==")[0]): line.strip() for line in out.splitlines() if "==" in line}
    return sorted((pin for name, pin in pins.items() if name not in SKIP and f"ros-{name}" not in pins),
                  key=str.lower)


def main(name: str = "constraints.txt") -> int:
    if name not in FILES:
        print(f"constraints: {name} is none of {', '.join(FILES)}", file=sys.stderr)
        return 2
    file, here = ROOT / name, marker()
    kept = []
    if file.exists():
        kept = [line for line in file.read_text().splitlines()
                if line.strip() and not line.startswith("#") and not line.endswith(f"; {here}")]
    lines = kept + [f"{pin} ; {here}" for pin in installed()]
    file.write_text(HEADER.format(name=name) + FILES[name]
                    + "\n".join(sorted(lines, key=lambda line: (line.partition(";")[2], line.lower()))) + "\n")
    print(f"constraints: wrote {len(lines) - len(kept)} pins for {here} into {file} ({len(kept)} others kept)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
