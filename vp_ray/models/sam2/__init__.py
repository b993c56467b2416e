"""SAM2: masks from clicks or a box on frame 0, tracked through the clip."""
