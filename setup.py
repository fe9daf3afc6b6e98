"""Only the optional C record walker lives here; everything else is in pyproject.toml."""

from setuptools import Extension, setup

# optional=True: without a compiler the install still succeeds and the Python walker is used.
setup(ext_modules=[Extension("analyzer.capture._walk", ["analyzer/capture/_walk.c"], optional=True)])
