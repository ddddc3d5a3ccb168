"""What `dockcache --version` and `doctor` say about dockcache itself."""

from __future__ import annotations

import os
import platform

import shim


def version_line() -> str:
    """The version, and which code and Python answer (what a bug report needs)."""
    where = os.path.dirname(os.path.dirname(os.path.abspath(shim.__file__)))
    return f"dockcache {shim.__version__} (python {platform.python_version()}, {where})"
