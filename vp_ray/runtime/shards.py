"""The driver's Parquet shards (``vp_ray.runtime.todo``) read into Ray Data: one read task per shard file.

``ray.data.read_parquet`` (2.60, its DataSourceV2 path) reads every file's footer on a pool of about
32 ``FooterReader`` actors, then ``ray.kill``s the pool: each run left about 32 dead actors and about
31 failed tasks (the constructors of readers killed before they started) on the dashboard, red on a
run where nothing failed. The shards need none of that: the driver wrote them a moment before, so
the driver lists them and each task reads one file.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from ray.data import Dataset, read_datasource
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask


class ShardsDatasource(Datasource):
    """The ``*.parquet`` files of one folder, one read task each; Ray Data names the operator
    ``ReadShards``."""

    def __init__(self, folder: str | Path):
        super().__init__()
        self.paths = sorted(str(path) for path in Path(folder).glob("*.parquet"))

    def estimate_inmemory_data_size(self) -> int:
        return sum(Path(path).stat().st_size for path in self.paths)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        tasks = []
        for path in self.paths:
            footer = pq.read_metadata(path)
            metadata = BlockMetadata(num_rows=footer.num_rows, size_bytes=Path(path).stat().st_size,
                                     input_files=[path], exec_stats=None)
            tasks.append(ReadTask(lambda path=path: [pq.read_table(path)], metadata,
                                  schema=footer.schema.to_arrow_schema(),
                                  per_task_row_limit=per_task_row_limit))
        return tasks


def read_shards(folder: str | Path) -> Dataset:
    """The rows of the shards in ``folder``, read as the pipeline needs them."""
    return read_datasource(ShardsDatasource(folder))
