"""Install megatron-prealign.

CPU machines: install the CPU build of torch first (``pip install torch==2.13.0``), then
``pip install -e .[test,hf]``. GPU clusters bring their own CUDA torch (NGC containers also bring
Transformer Engine and Apex, which the ``gpu`` extra names for completeness).
"""

from setuptools import find_packages, setup

setup(
    name="megatron-prealign",
    version="0.1.0",
    description="PreAlign multilingual pretraining (stage-1 alignment + code-switching) on Megatron-Core",
    python_requires=">=3.10",
    packages=find_packages(include=["megatron_prealign", "megatron_prealign.*"]),
    install_requires=[
        # A range the local CPU build 2.13.0 satisfies; clusters keep their own CUDA build.
        "torch>=2.4,<2.15",
        "megatron-core==0.16.1",
        "numpy",
        "packaging",
        "psutil",
        "sentencepiece",
        "nltk",
        "tqdm",
        "tensorboard",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "ruff>=0.15,<0.18"],
        "hf": ["transformers>=4.45", "tokenizers", "safetensors", "protobuf"],
        # Not on PyPI as binaries for every platform; NGC containers ship both.
        "gpu": ["transformer-engine[pytorch]", "apex"],
        "wandb": ["wandb"],
    },
)
