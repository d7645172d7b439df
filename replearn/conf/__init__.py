"""Hydra config schemas. Importing this package registers every schema in the ConfigStore."""

from pathlib import Path

# An installed wheel carries the configs as replearn/configs/ (setup.py copies them there); a
# checkout (and an editable install) has them at the top of the repository.
_PACKAGED = Path(__file__).resolve().parents[1] / "configs"
_CHECKOUT = Path(__file__).resolve().parents[2] / "configs"

#: Absolute path of the project's ``configs/`` directory.
CONFIG_DIR = _PACKAGED if (_PACKAGED / "train.yaml").is_file() else _CHECKOUT

# Importing the schema modules registers them in Hydra's ConfigStore (after CONFIG_DIR: they may read it).
from replearn.conf import analysis, bench, compare_depth, logger, trace, train, visualize  # noqa: E402,F401
