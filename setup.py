"""Everything is declared in pyproject.toml; this file only ships ``swiftnas-startup.pth``.

A ``.pth`` file must sit at the top of site-packages, where no package-data rule can put it, so
``build_py`` copies it there: into the wheel's root for a normal install, and into the editable
wheel's root for ``pip install -e`` (setuptools builds that wheel from a separate directory).
The file's one line makes ``import timm`` work in any interpreter of the environment (see
``_swiftnas_startup.py``).
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "swiftnas-startup.pth"


class build_py_with_pth(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            # editable_wheel points install_lib at the wheel it is packing; build_lib is dropped
            target = self.get_finalized_command("install").install_lib
        else:
            target = self.build_lib
        self.copy_file(PTH, os.path.join(target, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": build_py_with_pth})
