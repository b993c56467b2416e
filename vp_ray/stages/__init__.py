"""Pipeline stages: one callable per stage, each ``pandas.DataFrame -> pandas.DataFrame`` of rows.

Stages know nothing of each other: they read a row (and the files its ``work_dir`` names)
and return the row updated. ``vp_ray.graph`` assembles them into the Ray Data pipeline.
"""
