"""Seq2Exp: gene expression from DNA and epigenomic signals, with the regulatory elements it finds.

Su, Yu, Zhi & Ji, "Learning to Discover Regulatory Elements for Gene Expression Prediction",
ICLR 2025.
"""

__version__ = "0.1.0"

from .adapters.registry import register_on_import as _register_grelu_models

_register_grelu_models()
