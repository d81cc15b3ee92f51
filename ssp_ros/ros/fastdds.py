"""The Fast DDS XML profile the node runs with (``config/fastdds.xml``, passed by ``ssp.launch.py``)."""

PROFILE_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")  # Fast DDS 2.x, 3.x read these
