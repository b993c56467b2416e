"""Hydra's config tree of vp-ray, installed as the package ``vp_ray.conf`` (see pyproject.toml)."""
