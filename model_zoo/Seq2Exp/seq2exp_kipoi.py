"""What model-template.yaml names: Kipoi imports this file from this folder (``defined_as:
seq2exp_kipoi.<object>``).

- ``Seq2ExpKipoiModel``: the model class of the installed package (seq2exp_plugin.adapters.kipoi).
- ``Seq2ExpDataLoader``: the repository's Kipoi dataloader, ``dataloaders/dataloader.py`` (two
  folders up), loaded once per process.
"""

import importlib.util
import os
import sys

from seq2exp_plugin.adapters.kipoi import Seq2ExpKipoiModel  # noqa: F401
from seq2exp_plugin.adapters.kipoi_patches import install_excepthook

install_excepthook()  # kipoi prints our user errors in one line

_MODULE = "seq2exp_kipoi_dataloader"
_PATH = os.path.join(os.path.dirname(os.path.realpath(__file__)), os.pardir, os.pardir,
                     "dataloaders", "dataloader.py")


def _dataloader_module():
    if _MODULE not in sys.modules:
        path = os.path.normpath(_PATH)
        if not os.path.isfile(path):
            raise ImportError(f"the Seq2Exp Kipoi dataloader is missing: {path}")
        spec = importlib.util.spec_from_file_location(_MODULE, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[_MODULE]
            raise
    return sys.modules[_MODULE]


Seq2ExpDataLoader = _dataloader_module().Seq2ExpDataLoader
