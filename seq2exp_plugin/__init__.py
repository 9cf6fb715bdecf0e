"""Seq2Exp: gene expression from DNA and epigenomic signals, with the regulatory elements it finds.

Su, Yu, Zhi & Ji, "Learning to Discover Regulatory Elements for Gene Expression Prediction",
ICLR 2025.

Importing the package changes nothing outside it (no import hook, excepthook or warning filter):
``import seq2exp_plugin`` stays fast, and gReLU learns the model classes when asked
(:func:`register_grelu_models`).
"""

__version__ = "0.1.0"


def register_grelu_models() -> None:
    """Make ``Seq2ExpModel``, ``Seq2ExpGenerator``, ``Seq2ExpPredictor`` and the baselines
    buildable by name in gReLU (``LightningModel(model_params={"model_type": "Seq2ExpModel"})``,
    ``LightningModel.load_from_checkpoint`` of a ``seq2exp train`` checkpoint); imports gReLU.
    Idempotent; our own training and loading call it."""
    from .adapters.grelu import register

    register()
