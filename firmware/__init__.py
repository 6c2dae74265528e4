"""The reference firmware's C sources (C99, no heap), shipped as package data so ``metactl export --target
firmware`` builds from an installed metactl too; ``metactl.deploy.firmware_build`` drives their Makefile."""

import os

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
"""The folder holding the Makefile, ``src/`` (the portable core) and ``port/`` (one HAL per target)."""
