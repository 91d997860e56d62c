"""Importing a library without an optional dependency it would load only to offer it: thinc (under spaCy) imports
torch, bm25s imports scipy.sparse, though the CPU pipeline and the saved index never use them. Hiding them while
the library imports keeps a cold `rag ask` from paying for them (torch alone is about a second); afterwards an
import of them works as usual."""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType

# Held while a module is hidden, and by any code that imports a hidden module for its own use (rag.embed imports
# torch under it), so no thread finds a module missing that is installed.
HEAVY_IMPORTS = threading.Lock()


def import_without(name: str, hidden: tuple[str, ...]) -> ModuleType:
    """`import name`, with the modules `hidden` made unimportable while it runs, unless they are loaded already
    (then there is nothing to save) or `name` is."""
    with HEAVY_IMPORTS:
        if name in sys.modules:
            return sys.modules[name]
        hide = [h for h in hidden if h not in sys.modules]
        for h in hide:
            sys.modules[h] = None  # type: ignore[assignment]  # `import h` now raises ImportError
        try:
            return importlib.import_module(name)
        finally:
            for h in hide:
                if h in sys.modules and sys.modules[h] is None:
                    del sys.modules[h]
