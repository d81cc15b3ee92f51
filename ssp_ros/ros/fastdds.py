"""The Fast DDS XML profile the node runs with (``config/fastdds.xml``, passed by ``ssp.launch.py``)."""

from __future__ import annotations

PROFILE_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")  # Fast DDS 2.x, 3.x read these
FAST_DDS_2 = ("humble", "iron", "jazzy")  # the distros whose default RMW is Fast DDS 2.x


def profile_env(profile: str, distro: str | None) -> dict[str, str]:
    """The variables that make the node's Fast DDS load ``profile`` on ROS 2 ``distro`` (``ROS_DISTRO``): the 2.x
    name on Humble to Jazzy, the 3.x name from Kilted on (whose rmw_fastrtps still reads the old one, with a
    deprecation warning), both where the distro is unknown; none for an empty ``profile``."""
    if not profile:
        return {}
    if not distro:
        return dict.fromkeys(PROFILE_ENV, profile)
    return {PROFILE_ENV[0] if distro.lower() in FAST_DDS_2 else PROFILE_ENV[1]: profile}
