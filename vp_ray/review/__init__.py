"""Reviewing a run in a browser: look at every clip, judge it, fix its input, requeue it.

``python -m vp_ray.review OUTPUT_DIR`` serves the web app (``app``; it needs the ``review`` extra).
The rest is plain Python that runs also need: the verdicts and edits in ``OUTPUT_DIR/review.parquet``
(``store``), how an edit is checked and becomes a clip's record (``edits``), and what a run does with
them (``requeue``).
"""
