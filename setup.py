"""Build hook for the optional C accelerator ``shared._native`` (everything else is in pyproject.toml).

``optional=True``: on a machine without a C compiler the build warns and installs without it, and
``shared/security/`` falls back to its pure-Python code (set ``JOBFORGE_NATIVE=0`` to force that).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "shared._native",
            sources=["shared/_native.c"],
            optional=True,
        )
    ]
)
