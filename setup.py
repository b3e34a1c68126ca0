# cffi_modules is a setup() keyword with no pyproject.toml equivalent yet.
from setuptools import setup

setup(cffi_modules=["src/cryptbpf/bpf/_build_libbpf.py:ffibuilder"])
