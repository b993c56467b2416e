"""The command-line tools beside ``launch.py``: ``python -m vp_ray.tools.<name>``."""
