"""setuptools build hook: install ``metactl-gymnasium.pth`` beside the package, so Gymnasium knows metactl's envs.

Gymnasium 1.x reads no entry points; a one-line .pth at the site-packages root calls
``metactl.gymnasium_envs.install_hook`` at interpreter start (cheap: it imports neither Gymnasium nor MuJoCo).
"""

from __future__ import annotations

import os

from setuptools.command.build_py import build_py

PTH = "metactl-gymnasium.pth"
LINE = "import metactl.gymnasium_envs as _m; _m.install_hook()\n"


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        os.makedirs(self.build_lib, exist_ok=True)
        with open(os.path.join(self.build_lib, PTH), "w") as f:
            f.write(LINE)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]

    def get_output_mapping(self) -> dict[str, str]:
        return {**super().get_output_mapping(), os.path.join(self.build_lib, PTH): PTH}
