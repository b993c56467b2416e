"""Scores for a finished run (``task=evaluate``): the VideoPainter authors' evaluation, exactly
(``eval.protocol=vpbench``), or each metric inside and outside the hole (``eval.protocol=hole``).

    frames.py     a clip's result, reference and hole, and the authors' conversions of them
    pixel.py      PSNR, SSIM, MSE, MAE
    learned.py    LPIPS, CLIP score, CLIP temporal consistency, I3D features (weights.py finds their files)
    protocols.py  what each protocol measures on a clip, and how clips add up
    runner.py     the Ray job: every dataset row scored or saying why not, cached, resumable
    tiny.py       random weights in the released files' layouts (tests)

Nothing is imported here, so that ``tiny`` and ``i3d`` load without Ray or pandas.
"""
