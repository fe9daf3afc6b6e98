"""Only the optional C extensions of the hot path live here; everything else is in pyproject.toml."""

from setuptools import Extension, setup

# optional=True: without a compiler the install still succeeds and the numpy/Python twins are used.
EXTENSIONS = [
    Extension("analyzer.capture._walk", ["analyzer/capture/_walk.c"], optional=True),
    Extension("analyzer.decode._decode", ["analyzer/decode/_decode.c"], optional=True),
    Extension("analyzer.dissect._kinds", ["analyzer/dissect/_kinds.c"], optional=True),
    Extension("analyzer.scan._groups", ["analyzer/scan/_groups.c"], optional=True),
]
setup(ext_modules=EXTENSIONS)
