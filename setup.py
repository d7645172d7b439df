"""Ships the top-level configs/ inside the package: a built wheel holds them as replearn/configs/.

Everything else is in pyproject.toml. The folder stays at the top of the repository (where the
scripts and the README point); editable installs read it there (replearn.conf.CONFIG_DIR).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    """build_py plus a copy of configs/*.yaml into <build>/replearn/configs/."""

    def run(self):
        super().run()
        if self.editable_mode:
            return  # an editable install reads configs/ in place
        source = Path(__file__).resolve().parent / "configs"
        target = Path(self.build_lib) / "replearn" / "configs"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=lambda _dir, names: [n for n in names if n == "__pycache__"])


setup(cmdclass={"build_py": BuildWithConfigs})
