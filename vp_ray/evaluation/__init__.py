"""Scores for a finished run (``task=evaluate``): the VideoPainter authors' evaluation, exactly
(``eval.protocol=vpbench``), or each metric inside and outside the hole (``eval.protocol=hole``); and
scores of every clip that need no reference, computed while the run writes it (``qa.py``).

    frames.py     a clip's result, reference and hole, and the authors' conversions of them
    pixel.py      PSNR, SSIM, MSE, MAE
    learned.py    LPIPS, CLIP score, CLIP temporal consistency, I3D features (weights.py finds their files)
    protocols.py  what each protocol measures on a clip, and how clips add up
    runner.py     the Ray job: every dataset row scored or saying why not, cached, resumable
    tiny.py       random weights in the released files' layouts (tests)
    qa.py         drift, flicker, seam and object-back scores of a clip, no ground truth (the write stage)

Nothing is imported here, so that ``tiny`` and ``i3d`` load without Ray or pandas.
"""
