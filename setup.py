"""Install megatron-prealign (the metadata lives in ``pyproject.toml``).

CPU machines: install the CPU build of torch first (``pip install torch==2.13.0``), then
``pip install -e .[test,hf]``. GPU clusters bring their own CUDA torch (NGC containers also bring
Transformer Engine and Apex, which the ``gpu`` extra names for completeness).
"""

from setuptools import setup

setup()
