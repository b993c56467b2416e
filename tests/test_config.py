"""The schema, the YAML files and the README's configuration section agree (no drift)."""

from __future__ import annotations

import dataclasses
import re
from enum import Enum

from conftest import REPO, compose_dictconfig

from vp_ray.config import Config, load_config, model_schemas
from vp_ray.models import MODELS

README = (REPO / "README.md").read_text()
SECTION = README[README.index("## Configuration"):README.index("## Models")]


def test_readme_lists_every_group_and_option_with_its_default():
    defaults = dict(re.findall(r"^  - (\w+): (\w+)$", (REPO / "conf" / "config.yaml").read_text(), re.M))
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|", SECTION, re.M))
    groups = sorted(p.name for p in (REPO / "conf").iterdir() if p.is_dir())
    assert sorted(rows) == groups
    for group in groups:
        options = sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))
        assert sorted(re.findall(r"`(\w+)`", rows[group])) == options, group
        assert f"`{defaults[group]}` (default)" in rows[group], group


def test_readme_run_settings_are_the_schema_defaults(tmp_path):
    groups = {"dataset", "model", "cluster", "sam2", "retry", "eval", "qa", "review"}
    settings = [f.name for f in dataclasses.fields(Config) if f.name not in groups]
    listed = dict(re.findall(r"`(\w+)`(?:\s+\(([^)]*)\))?", SECTION[SECTION.index("Run settings:"):]))
    assert sorted(listed) == sorted(settings)
    composed = load_config(compose_dictconfig([f"output_dir={tmp_path}"]))  # launch.py's, report included
    for name in settings:
        if name != "output_dir":
            value = getattr(composed, name)
            value = value.value if isinstance(value, Enum) else value
            shown = str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) \
                else str(value)
            assert listed[name] in (shown, str(value)), (name, listed[name], value)


def test_yaml_files_only_hold_what_differs_from_the_schema():
    """One place for every default: an option's YAML states only what it changes."""
    from omegaconf import OmegaConf

    from vp_ray.config import GROUP_SCHEMAS
    from vp_ray.models import MODELS

    schemas = {**{g: [s] for g, s in GROUP_SCHEMAS.items()}, "model": {spec.schema for spec in MODELS.values()}}
    for group, candidates in schemas.items():
        for path in (REPO / "conf" / group).glob("*.yaml"):
            given = OmegaConf.to_container(OmegaConf.load(path))
            base = given.pop("defaults")[0].removeprefix("base_")
            schema = next(s for s in candidates if base in (group, getattr(s, "name", None)))
            defaults = {f.name: f.default for f in dataclasses.fields(schema)}
            for key, value in given.items():
                if key == "name":
                    continue
                default = defaults[key]
                default = default.name if hasattr(default, "name") and not isinstance(default, str) else default
                assert value != default, f"{path.relative_to(REPO)}: {key}: {value!r} restates the default"


def test_an_installed_package_finds_its_configs(tmp_path):
    """The single-video command composes the config from a plain (non-editable) install."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "wheel"), str(REPO)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("vp_ray-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    code = ("import vp_ray, vp_ray.tools.single as s; assert 'site' in vp_ray.__file__, vp_ray.__file__; "
            "print(s.compose(['model=tiny']).model.num_inference_steps)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "4"


def test_every_model_of_the_registry_has_its_schema_registered_with_hydra():
    assert {spec.schema for spec in MODELS.values()} == set(model_schemas())
