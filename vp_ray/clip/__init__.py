"""The per-clip data path: records in, frames and masks through the clip's work folder, files out."""
