"""Hydra config schemas. Importing this package registers every schema in the ConfigStore."""

from pathlib import Path

#: Absolute path of the project's ``configs/`` directory.
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

from replearn.conf import logger  # noqa: E402,F401  (registers on import)
from replearn.conf import train  # noqa: E402,F401
from replearn.conf import bench  # noqa: E402,F401
from replearn.conf import trace  # noqa: E402,F401
from replearn.conf import analysis  # noqa: E402,F401
from replearn.conf import visualize  # noqa: E402,F401
from replearn.conf import compare_depth  # noqa: E402,F401
