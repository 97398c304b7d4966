"""Build hook: a wheel carries the repository's asset folders (nexus_pretrain.paths.ASSETS) inside the
package, so a regular install finds the Hydra configs, task folders, table layouts and recipes without
the checkout. The rest of the build is configured in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ASSETS = ("configs", "eval/tasks", "eval/tables", "data_pipelines/recipes")  # = nexus_pretrain.paths.ASSETS


class BuildPyWithAssets(build_py):
    """build_py that also copies each asset folder to nexus_pretrain/<folder> in the build tree."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's folders in place
            return
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in ASSETS:
            shutil.copytree(Path(name), Path(self.build_lib) / "nexus_pretrain" / name, ignore=ignore,
                            dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithAssets})
