"""Run the VideoPainter authors' evaluation code on inputs.npz and store what it computes (authors.npz).

Not run by the tests: it documents how authors.npz was made (README.md beside it). Run it with the
authors' libraries (README: versions), their evaluate/ folder (github.com/TencentARC/VideoPainter,
commit bbab6cd) and the random weights of `python -m vp_ray.evaluation.tiny --out WEIGHTS`:

    TORCH_HOME=$WEIGHTS/torch_home python make_fixture.py --evaluate VideoPainter/evaluate --weights $WEIGHTS

It calls their code: `_visualize_video` (taken from eval_inpainting.py, whose module imports a
pipeline of their diffusers fork), `MetricsCalculator`'s metric methods, `calculate_i3d_activations`,
`calculate_vfid`, `InceptionI3d`. The glue between the calls follows `main_worker` step by step.
MetricsCalculator's constructor also loads CogVLM2 and GPT-4o clients (captioning only): the
calculator is made without it, its metric objects set as the constructor sets them.
"""

from __future__ import annotations

import argparse
import ast
import importlib.machinery
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent


def authors_function(path: Path, name: str, namespace: dict) -> None:
    """Define function ``name`` of ``path`` in ``namespace`` (the module itself cannot be imported)."""
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluate", type=Path, required=True, help="the authors' evaluate/ folder")
    parser.add_argument("--weights", type=Path, required=True, help="python -m vp_ray.evaluation.tiny --out ...")
    args = parser.parse_args()
    torch.manual_seed(0)
    stub = types.ModuleType("openai")  # the captioning client: not used by the metrics
    stub.__spec__, stub.OpenAI = importlib.machinery.ModuleSpec("openai", None), None
    sys.modules["openai"] = stub
    sys.path.insert(0, str(args.evaluate))
    import clip
    import metrics as authors
    from diffusers.video_processor import VideoProcessor
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
    from torchmetrics.multimodal.clip_score import CLIPScore
    from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError

    # LPIPS's backbone comes from torchvision's cache: the random one is put where it looks.
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.weights / "squeezenet1_1-b8a52dc0.pth", hub / "squeezenet1_1-b8a52dc0.pth")

    inputs = np.load(HERE / "inputs.npz")
    source, objects, fills = inputs["source"], inputs["objects"], inputs["fills"]
    dilate_size, prompt = int(inputs["dilate_size"]), str(inputs["prompt"])
    device = torch.device("cpu")

    calc = authors.MetricsCalculator.__new__(authors.MetricsCalculator)
    calc.device = device
    calc.clip_metric_calculator = CLIPScore(model_name_or_path=str(args.weights / "clip-vit-large-patch14")).to(device)
    calc.psnr_metric_calculator = PeakSignalNoiseRatio(data_range=1.0).to(device)
    calc.lpips_metric_calculator = LearnedPerceptualImagePatchSimilarity(net_type="squeeze").to(device)
    calc.mse_metric_calculator = MeanSquaredError().to(device)
    calc.ssim_metric_calculator = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)
    calc.l1_metric_calculator = MeanAbsoluteError().to(device)
    calc.clip_model = clip.load(str(args.weights / "ViT-B-32.pt"), device=device)[0]
    # init_i3d_model without its .to('cuda:0'); like it, no .eval().
    i3d_model = authors.InceptionI3d(400, in_channels=3, final_endpoint="Logits")
    i3d_model.load_state_dict(torch.load(args.weights / "i3d_rgb_imagenet.pt"))

    namespace = {"np": np, "Image": Image}
    eval_script = args.evaluate / "eval_inpainting.py"
    for name in ("_visualize_video", "concatenate_images_horizontally"):
        authors_function(eval_script, name, namespace)
    pipe = types.SimpleNamespace(
        video_processor=VideoProcessor(vae_scale_factor=8),
        masked_video_processor=VideoProcessor(vae_scale_factor=8, do_normalize=False, do_binarize=True,
                                              do_convert_grayscale=True))

    frame_names = ["psnr", "ssim", "lpips", "mse", "mae", "clip_score", "masked_psnr", "masked_ssim", "masked_lpips",
                   "masked_mse", "masked_mae", "masked_clip_score", "masked_region_clip_score"]
    out = {name: [] for name in frame_names}
    out.update(ori_frames=[], masks=[], comp_frames=[], temporal_consistency=[], masked_temporal_consistency=[],
               real_i3d=[], fake_i3d=[])
    for fill in fills:
        # The dataset's PIL frames and 0/255 masks (read_video_with_mask, then main_worker's conversions).
        video_PIL = [Image.fromarray(frame).convert("RGB") for frame in source]
        masks_PIL = [Image.fromarray(np.where(np.repeat(m[..., None], 3, 2), 255, 0).astype(np.uint8))
                     .convert("L").convert("RGB") for m in objects]
        masks_PIL = [Image.fromarray(np.array(m).astype(np.uint8)).convert("RGB") for m in masks_PIL]
        # The generating branch dilates the masks it scores with.
        for i in range(len(masks_PIL)):
            masks_PIL[i] = Image.fromarray(cv2_dilate(np.array(masks_PIL[i]), dilate_size).astype(np.uint8))
        # The result enters as the branch with saved frames reads it: uint8 / 255.0.
        video_generate = fill / 255.0
        _, ori_frames, masks = namespace["_visualize_video"](pipe, video_PIL[:len(video_generate)], video_generate,
                                                             masks_PIL[:len(video_generate)])
        comp_frames = video_generate
        ori_frames = ori_frames * 255
        comp_frames = comp_frames * 255
        ori_frames, comp_frames = ori_frames.astype(np.uint8), comp_frames.astype(np.uint8)
        masks = masks.astype(np.uint8)
        for i in range(len(comp_frames)):  # --replace_gt
            comp_frames[i] = comp_frames[i] * masks[i] + ori_frames[i] * (1 - masks[i])
        values = {name: [] for name in frame_names}
        comp_PIL, frames_PIL = [], []
        for ori, comp, mask in zip(ori_frames, comp_frames, masks):
            values["psnr"].append(calc.calculate_psnr(ori, comp))
            values["ssim"].append(calc.calculate_ssim(ori, comp))
            values["lpips"].append(calc.calculate_lpips(ori, comp))
            values["mse"].append(calc.calculate_mse(ori, comp))
            values["mae"].append(calc.calculate_mae(ori, comp))
            values["clip_score"].append(calc.calculate_clip_similarity(img=comp, txt=prompt))
            mask_np = np.array(mask)
            values["masked_psnr"].append(calc.calculate_psnr(ori, comp, mask_gt=1 - mask_np))
            values["masked_ssim"].append(calc.calculate_ssim(ori, comp, mask_gt=1 - mask_np))
            values["masked_lpips"].append(calc.calculate_lpips(ori, comp, mask_gt=1 - mask_np))
            values["masked_mse"].append(calc.calculate_mse(ori, comp, mask_gt=1 - mask_np))
            values["masked_mae"].append(calc.calculate_mae(ori, comp, mask_gt=1 - mask_np))
            values["masked_clip_score"].append(calc.calculate_clip_similarity(img=comp, txt=prompt, mask=mask_np))
            values["masked_region_clip_score"].append(
                calc.calculate_clip_similarity(img=comp, txt=prompt, mask=mask_np))
            frames_PIL.append(Image.fromarray(ori.astype(np.uint8)))
            comp_PIL.append(Image.fromarray(comp.astype(np.uint8)))
        real, fake = authors.calculate_i3d_activations(frames_PIL, comp_PIL, i3d_model, device=device)
        for name in frame_names:
            out[name].append(values[name])
        out["temporal_consistency"].append(calc.calculate_temporal_consistency(np.stack(comp_frames)))
        out["masked_temporal_consistency"].append(calc.calculate_temporal_consistency(np.stack(comp_frames), masks))
        out["ori_frames"].append(ori_frames)
        out["masks"].append(masks[..., 0])
        out["comp_frames"].append(comp_frames)
        out["real_i3d"].append(real)
        out["fake_i3d"].append(fake)
    arrays = {k: np.asarray(v) for k, v in out.items()}
    # The benchmark's numbers: every frame of every video alike; temporal consistency per video.
    for name in frame_names:
        arrays[f"overall_{name}"] = np.array(sum(sum(v) for v in out[name]) / sum(len(v) for v in out[name]))
    for name in ("temporal_consistency", "masked_temporal_consistency"):
        arrays[f"overall_{name}"] = np.array(sum(out[name]) / len(out[name]))
    arrays["fvid"] = np.array(authors.calculate_vfid(out["real_i3d"], out["fake_i3d"]))
    lpips_linear = calc.lpips_metric_calculator.net.state_dict()
    for i in range(7):  # the released linear layers torchmetrics ships, which the fixture's LPIPS used
        arrays[f"lpips_lin{i}"] = lpips_linear[f"lin{i}.model.1.weight"].numpy()
    np.savez_compressed(HERE / "authors.npz", **arrays)
    for key in sorted(arrays):
        if key.startswith("overall_") or key == "fvid":
            print(f"{key:40s} {float(arrays[key]):.8g}")


def cv2_dilate(mask: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.dilate(mask, np.ones((size, size)))  # main_worker's call, as it is


if __name__ == "__main__":
    main()
