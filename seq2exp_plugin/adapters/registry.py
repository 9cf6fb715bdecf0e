"""Registers the Seq2Exp model classes with gReLU the moment ``grelu.model.models`` is imported.

Kept free of heavy imports: ``import seq2exp_plugin`` installs the hook, and the model classes
(torch and all) load only when gReLU itself is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

TARGET = "grelu.model.models"


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of ``grelu.model.models`` so registration runs right after it loads."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            from .grelu import MODEL_CLASSES

            for cls in MODEL_CLASSES:
                setattr(module, cls.__name__, cls)

        spec.loader.exec_module = exec_and_register
        return spec


def register_on_import() -> None:
    """Register now if gReLU's models are loaded, else as soon as they are."""
    if TARGET in sys.modules:
        from .grelu import register

        register()
    elif not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
