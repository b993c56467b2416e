"""vp-ray's Grafana dashboard (``grafana_dashboard.json`` beside this file), put where Ray's own are.

The head node's Ray dashboard writes Grafana's configuration under its session folder
(``<session>/metrics/grafana/``): ``grafana.ini`` and a provisioning file whose dashboard provider
"Ray" loads every JSON file of ``<session>/metrics/grafana/dashboards/`` (Ray's Default, Data, Serve
and Train dashboards). A Grafana started the way Ray's docs say (``grafana-server --config
/tmp/ray/session_latest/metrics/grafana/grafana.ini web``) therefore lists a JSON file put in that
folder in its Ray folder, and reads it again when it changes. The driver puts ours there when it
runs on the head node; the dashboard's process wipes and rewrites the folder when it starts (for a
local instance, possibly after ``ray.init`` returned), so the driver checks on each of its samples
that the file is still there. Elsewhere (a driver on another node, or a Grafana of your own) import
the JSON file by hand.

Ray's Metrics view embeds only Ray's Core and Data dashboards (by their uids); its "View tab in
Grafana" opens Grafana, where Dashboards > Ray > vp-ray is one click away.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

DASHBOARD = Path(__file__).with_name("grafana_dashboard.json")
INSTALLED_NAME = "vp_ray_grafana_dashboard.json"


def ray_dashboards_folder() -> Path | None:
    """The folder Grafana's "Ray" provider reads, as the head's Ray dashboard set it up (its
    environment variables, as Ray reads them), if this process runs on the head node."""
    import ray

    node = ray._private.worker._global_node
    if node is None:
        return None
    metrics = Path(os.environ.get("RAY_METRICS_OUTPUT_ROOT") or Path(node.get_session_dir_path()) / "metrics")
    if not (metrics / "grafana").is_dir():  # not the head node, or its Ray dashboard is off
        return None
    return Path(os.environ.get("RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR") or metrics / "grafana" / "dashboards")


class DashboardInstaller:
    """Puts the dashboard into Ray's folder, and again if the folder was rewritten; says where once."""

    def __init__(self):
        self.said = self.failed = False

    def ensure(self) -> None:
        folder = ray_dashboards_folder()
        if folder is None or (folder / INSTALLED_NAME).exists():
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(DASHBOARD, folder / INSTALLED_NAME)
        except OSError as error:  # a dashboard must never fail a run
            if not self.failed:
                self.failed = True
                log.warning("could not put the Grafana dashboard into %s: %s", folder, error)
            return
        if not self.said:
            self.said = True
            log.info("Grafana dashboard: %s (in Grafana: Dashboards > Ray > vp-ray)", folder / INSTALLED_NAME)
