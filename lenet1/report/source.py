"""The package's own source code, shown on a book page: the chapters display the code they
explain from the package itself, never a copy of it."""

from __future__ import annotations

import inspect
import textwrap
from typing import Any


def show_source(obj: object) -> Any:
    """``obj``'s source (a function, method, property or class of the package), dedented, as an
    ``IPython.display.Code`` block highlighted as Python. A property shows its getter."""
    from IPython.display import Code

    target = obj.fget if isinstance(obj, property) and obj.fget is not None else obj
    return Code(textwrap.dedent(inspect.getsource(target)), language="python")  # type: ignore[arg-type]


__all__ = ["show_source"]
