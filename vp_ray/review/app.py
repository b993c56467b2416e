"""The review web app: FastAPI routes over a run's output folder, and a plain HTML/JS page (``static/``).

Security (README, "Review"): only files under the output folder are served (no ``..``, no absolute
path, no hidden entry, nothing a symlink leads out to); with a token every request must carry it
(cookie, ``Authorization: Bearer`` or ``?token=``); without one, only requests addressed to a loopback
name are answered (a page of another site that rebinds its name to 127.0.0.1 is refused); a request
that changes something and comes from another site's page (its ``Origin``) is refused. Every edit is
checked before anything is written: a malformed one gets a 4xx answer saying what is wrong.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import cv2
from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from vp_ray.clip import outputs
from vp_ray.clip.records import CLIP_ID_PATTERN
from vp_ray.clip.rows import RECORD_COLUMNS, clip_dilate_size
from vp_ray.config import Config
from vp_ray.errors import ConfigError
from vp_ray.review import store
from vp_ray.review.edits import EditError, check_edits, record_fields
from vp_ray.review.index import ClipIndex, Query, QueryError, frame_size, records
from vp_ray.review.prompter import Prompter

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
JsonBody = Annotated[Any, Body()]
TOKEN_COOKIE = "vp_review_token"
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
PREVIEWS = Path("review") / "previews"
THUMB_WIDTH = 192
CLIP_FILES = ("result.mp4", "result_vis.mp4", "mask.mp4", "all_masks.npz", "frame0_original.png",
              "frame0_with_mask.png", "mask0.png", "meta.json")


def create_app(output_dir: str | Path, run_cfg: Config, token: str | None = None,
               refresh_s: float = 1.0) -> FastAPI:
    """The app for one output folder. ``run_cfg``: the config of the run (what SAM2 previews
    follow); ``token``: required of every request when given."""
    root = Path(output_dir).resolve()
    index = ClipIndex(root, min_interval_s=refresh_s)
    reviews = store.ReviewStore(root)
    prompter = Prompter(dataclasses.replace(run_cfg, output_dir=str(root / PREVIEWS)))
    thumbs = ThumbCache()
    app = FastAPI(title="vp-ray review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.index, app.state.prompter = index, prompter

    @app.middleware("http")
    async def guard(request: Request, call_next):
        refused = refusal(request, token)
        if refused is not None:
            return refused
        if token and request.query_params.get("token"):  # from the printed URL: keep it in a cookie
            response = RedirectResponse(str(request.url.remove_query_params("token")), status_code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    def page():
        return FileResponse(STATIC / "index.html")

    # ---------------------------------------------------------------- the table

    @app.get("/api/status")
    def status():
        index.refresh()
        return {"version": index.version, "output_dir": str(root), "counts": index.counts(),
                "sam2": run_cfg.sam2.name, "sam2_loaded": prompter.loaded}

    @app.get("/api/columns")
    def columns():
        index.refresh()
        return index.columns()

    @app.get("/api/clips")
    def clips(request: Request, offset: int = 0, limit: int = 50):
        index.refresh()
        limit = max(1, min(limit, 200))
        selected = index.select(parse_query(request))
        page = selected.iloc[max(0, offset):max(0, offset) + limit]
        return {"version": index.version, "total": len(index.table), "matched": len(selected),
                "offset": offset, "rows": records(page)}

    @app.get("/api/neighbours/{clip_id}")
    def neighbours(clip_id: str, request: Request):
        index.refresh()
        ids = index.select(parse_query(request)).clip_id.tolist()
        if clip_id not in ids:
            return {"position": None, "matched": len(ids), "previous": None, "next": None}
        at = ids.index(clip_id)
        return {"position": at, "matched": len(ids), "previous": ids[at - 1] if at > 0 else None,
                "next": ids[at + 1] if at + 1 < len(ids) else None}

    @app.get("/api/clips/{clip_id}")
    def clip(clip_id: str):
        row = known_clip(index, clip_id)
        folder = outputs.clip_dir(root, clip_id)
        files = {}
        for name in CLIP_FILES:
            path = folder / name
            if path.is_file():
                files[name] = f"/files/clips/{quote(clip_id)}/{name}?v={path.stat().st_mtime_ns}"
        size = frame_size(folder / "frame0_original.png")
        preview = root / PREVIEWS / f"{clip_id}.mp4"
        meta = outputs.read_meta(root, clip_id)
        return {"row": row, "meta": meta, "files": files,
                "frame": {"width": size[0], "height": size[1]} if size else None,
                "review": reviews.read().get(clip_id),
                "dilate_size": clip_dilate_size(meta or {}, run_cfg.dilate_size),
                "tracked_preview": f"/files/{PREVIEWS}/{quote(clip_id)}.mp4?v={preview.stat().st_mtime_ns}"
                if preview.is_file() else None}

    @app.get("/api/thumbs/{clip_id}")
    def thumb(clip_id: str):
        known_clip(index, clip_id)
        folder = outputs.clip_dir(root, clip_id)
        for name in ("frame0_with_mask.png", "frame0_original.png"):
            path = folder / name
            if path.is_file():
                return Response(thumbs.get(path), media_type="image/jpeg")
        raise HTTPException(404, f"clip {clip_id} has no frame 0 image")

    # ---------------------------------------------------------------- judging and editing

    @app.post("/api/clips/{clip_id}/verdict")
    def verdict(clip_id: str, body: JsonBody):
        known_clip(index, clip_id)
        fields = expect_object(body, {"verdict", "note"})
        if fields.get("verdict") not in (store.ACCEPTED, store.REJECTED, ""):
            raise HTTPException(422, "verdict must be accepted, rejected or \"\" (none)")
        note = check_note(fields.get("note"))

        def judge(row: dict[str, Any]) -> dict[str, Any]:
            row.update(verdict=fields["verdict"], reviewed_at=store.now())
            if note is not None:
                row["note"] = note
            if row["requeue"] == store.PENDING:  # judged again: the requeue is called off
                row["requeue"] = ""
            return row

        return reviews.update([clip_id], judge)[clip_id]

    @app.post("/api/clips/{clip_id}/requeue")
    def requeue(clip_id: str, body: JsonBody):
        known_clip(index, clip_id)
        fields = expect_object(body, {"edits", "note"})
        edits = checked_edits(root, clip_id, fields.get("edits", {}))  # none: redo the clip as it is
        note = check_note(fields.get("note"))
        if edits["frame_width"] is not None:
            check_placed(edits, outputs.read_meta(root, clip_id), run_cfg)

        def mark(current: dict[str, Any]) -> dict[str, Any]:
            current.update(edits, verdict=store.REQUEUED, requeue=store.PENDING, requeued_at=store.now(),
                           requeue_error="", reviewed_at=store.now())
            if note is not None:
                current["note"] = note
            return current

        return reviews.update([clip_id], mark)[clip_id]

    @app.post("/api/clips/{clip_id}/mask")
    def mask_preview(clip_id: str, body: JsonBody):
        """Frame 0 with SAM2's mask for these clicks/box, dilated as the inpainter fills it (PNG)."""
        known_clip(index, clip_id)
        fields = expect_object(body, {"points", "box", "dilate_size"})
        if fields.get("points") is None and fields.get("box") is None:
            raise HTTPException(422, "give points or a box")
        edits = checked_edits(root, clip_id, fields)
        path = outputs.clip_dir(root, clip_id) / "frame0_original.png"
        frame = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        points = json.loads(edits["points"]) if edits["points"] else []
        box = json.loads(edits["box"]) if edits["box"] else None
        dilate = edits["dilate_size"] if edits["dilate_size"] is not None \
            else clip_dilate_size(outputs.read_meta(root, clip_id) or {}, run_cfg.dilate_size)
        with sam2_errors():
            mask, filled = prompter.first_frame((clip_id, path.stat().st_mtime_ns), frame, points, box, dilate)
        picture = outputs.overlay(frame, filled, points, box)
        _, png = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        return Response(png.tobytes(), media_type="image/png",
                        headers={"X-Mask-Area": f"{mask.mean():.5f}", "X-Filled-Area": f"{filled.mean():.5f}"})

    @app.post("/api/clips/{clip_id}/track")
    def tracked_preview(clip_id: str, body: JsonBody):
        """The mask over the whole clip, made as a requeue run would (the mask-only path)."""
        known_clip(index, clip_id)
        fields = expect_object(body, {"edits"})
        edits = checked_edits(root, clip_id, fields.get("edits", {}))
        meta = outputs.read_meta(root, clip_id)
        if meta is None:
            raise HTTPException(409, f"clip {clip_id} has no meta.json: its record is not known here")
        try:
            changed = record_fields(edits, (meta["source_width"], meta["source_height"]), run_cfg)
        except EditError as error:
            raise HTTPException(422, str(error)) from None
        record = {**{k: meta.get(k) for k in RECORD_COLUMNS}, **changed}
        preview = root / PREVIEWS / f"{clip_id}.mp4"
        with sam2_errors():
            final = prompter.tracked(record, preview)
        if final["status"] == "failed":
            raise HTTPException(422, f"the tracked preview failed at {final['failed_stage']}: {final['error']}")
        return {"url": f"/files/{PREVIEWS}/{quote(clip_id)}.mp4?v={preview.stat().st_mtime_ns}",
                "frames": int(final["num_frames"]), "mask_area": float(final["mask_area"])}

    # ---------------------------------------------------------------- files

    @app.get("/files/{relative:path}")
    def files(relative: str):
        return FileResponse(safe_path(root, relative))

    @app.exception_handler(QueryError)
    async def bad_query(request: Request, error: QueryError):
        return JSONResponse({"detail": str(error)}, status_code=400)

    return app


# -------------------------------------------------------------------- checks

def refusal(request: Request, token: str | None) -> Response | None:
    """Why this request is not answered, or None."""
    if token:
        given = (request.cookies.get(TOKEN_COOKIE), request.query_params.get("token"),
                 request.headers.get("authorization", "").removeprefix("Bearer ").strip())
        if not any(hmac.compare_digest(value.encode(), token.encode()) for value in given if value):
            return JSONResponse({"detail": "this server needs its token: open the URL it printed "
                                           "(…/?token=...), or send Authorization: Bearer <token>"}, status_code=401)
    else:
        host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
        if host not in LOOPBACK_NAMES and f"[{host}]" not in LOOPBACK_NAMES:
            return JSONResponse({"detail": f"host {host!r} refused: without a token this server answers only "
                                           "requests to 127.0.0.1 or localhost"}, status_code=403)
    origin = request.headers.get("origin")
    if request.method not in ("GET", "HEAD") and origin and urlsplit(origin).netloc != request.headers.get("host"):
        return JSONResponse({"detail": f"a change from the page of {origin} is refused"}, status_code=403)
    return None


def safe_path(root: Path, relative: str) -> Path:
    """The file ``relative`` names under ``root`` (resolved), or an HTTP error: 403 for a path that
    would leave it (absolute, ``..``, a hidden entry, a symlink that points out), 404 if missing."""
    parts = relative.split("/")
    if (not relative or relative.startswith("/") or "\\" in relative or "\x00" in relative
            or any(part in ("", ".", "..") or part.startswith(".") for part in parts)):
        raise HTTPException(403, f"path {relative!r} refused: only files under the output folder are served")
    try:
        real = (root / relative).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise HTTPException(404, f"no file {relative}") from None
    except (OSError, RuntimeError):  # a symlink loop
        raise HTTPException(403, f"path {relative!r} refused") from None
    if not real.is_relative_to(root):
        raise HTTPException(403, f"path {relative!r} refused: it leads out of the output folder")
    if not real.is_file():
        raise HTTPException(404, f"{relative} is not a file")
    return real


def known_clip(index: ClipIndex, clip_id: str) -> dict[str, Any]:
    if not CLIP_ID_PATTERN.match(clip_id) or ".." in clip_id:
        raise HTTPException(400, f"{clip_id!r} is not a clip id")
    row = index.row(clip_id)
    if row is None:
        index.refresh(force=True)  # committed a moment ago?
        row = index.row(clip_id)
    if row is None:
        raise HTTPException(404, f"no clip {clip_id} in this output folder")
    return row


def expect_object(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise HTTPException(422, "the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise HTTPException(422, f"unknown field(s) {unknown}; expected some of {sorted(allowed)}")
    return body


def check_note(note: Any) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str) or len(note) > 2000:
        raise HTTPException(422, "note must be text of at most 2000 characters")
    return note


def checked_edits(root: Path, clip_id: str, edits: Any) -> dict[str, Any]:
    try:
        return check_edits(edits, frame_size(outputs.clip_dir(root, clip_id) / "frame0_original.png"))
    except EditError as error:
        raise HTTPException(422, str(error)) from None


@contextmanager
def sam2_errors() -> Iterator[None]:
    """SAM2 that cannot load (no checkpoint, a wrong config) answers 409 with the reason."""
    try:
        yield
    except ConfigError as error:
        raise HTTPException(409, f"SAM2 cannot run here: {error}. Start the server with other sam2 settings "
                                 "after the folder (python -m vp_ray.review OUT sam2=... "
                                 "sam2.checkpoint=...)") from None


def check_placed(edits: dict[str, Any], meta: dict[str, Any] | None, run_cfg: Config) -> None:
    """A click or box must land on the source frame as the run places it (not in resize_mode=pad's bars)."""
    from vp_ray.clip.prompts import parse_prompts
    from vp_ray.clip.video import placement_for
    from vp_ray.errors import ClipError

    if meta is None or not meta.get("source_width"):
        raise HTTPException(409, "the clip's source size is unknown (no meta.json): a click cannot be placed")
    source = (meta["source_width"], meta["source_height"])
    try:
        fields = record_fields(edits, source, run_cfg)
        placement = placement_for(source[1], source[0], edits["frame_height"], edits["frame_width"],
                                  run_cfg.resize_mode)
        parse_prompts(fields["points"], fields["box"], placement, run_cfg.dataset.prompt_coords)
    except (EditError, ClipError) as error:
        raise HTTPException(422, str(error)) from None


def parse_query(request: Request) -> Query:
    """``?f=column:op:value`` (repeatable), ``sort=column``, ``desc=1``, ``q=text``."""
    filters = []
    for text in request.query_params.getlist("f"):
        column, _, rest = text.partition(":")
        op, _, value = rest.partition(":")
        filters.append((column, op, value))
    return Query(filters=filters, sort=request.query_params.get("sort") or "clip_id",
                 descending=request.query_params.get("desc") in ("1", "true"), text=request.query_params.get("q", ""))


class ThumbCache:
    """Small JPEGs of frame-0 images, kept for the last few thousand clips shown (about 8 KB each)."""

    def __init__(self, size: int = 2000):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, path: Path) -> bytes:
        key = (str(path), path.stat().st_mtime_ns)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        image = cv2.imread(str(path))
        height, width = image.shape[:2]
        scale = THUMB_WIDTH / width
        small = cv2.resize(image, (THUMB_WIDTH, max(1, round(height * scale))), interpolation=cv2.INTER_AREA) \
            if scale < 1 else image
        data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return data


def run_config(output_dir: Path, overrides: list[str]) -> Config:
    """The config of the newest ``launch.py`` run logged in ``output_dir`` (Hydra's
    ``logs/*/.hydra/overrides.yaml``, resolved against the folder it ran from), then ``overrides``;
    without a logged run, the defaults and ``overrides``."""
    from omegaconf import OmegaConf

    from vp_ray import config

    logged = sorted(output_dir.glob("logs/*/.hydra/overrides.yaml"))
    base, cwd = ["dataset=csv", "dataset.path=-"], None
    if logged:
        base = [o for o in OmegaConf.load(logged[-1]) if o.split("=")[0].lstrip("+~") not in ("review.requeue", "task")]
        hydra = logged[-1].with_name("hydra.yaml")
        if hydra.is_file():
            cwd = OmegaConf.load(hydra).hydra.runtime.cwd
    cfg = config.compose([*base, *overrides, f"output_dir={output_dir}"])
    return config.load_config(cfg, base_dir=cwd)

