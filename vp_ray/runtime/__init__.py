"""The driver: reads the dataset, assembles the Ray Data pipeline, bounds it, watches it, and keeps the
manifest, the summary and the report. Nothing here runs in a clip's worker."""
