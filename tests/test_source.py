"""lenet1.report.source: the chapters show the package's own code."""

from __future__ import annotations

import inspect
import textwrap

import pytest

pytest.importorskip("IPython")

from lenet1.experiments.paper import GridPoint, select  # noqa: E402
from lenet1.nets import LeNet1  # noqa: E402
from lenet1.report.source import show_source  # noqa: E402


def test_shows_a_method_dedented_and_highlighted() -> None:
    shown = show_source(LeNet1.layers)
    assert shown.data.startswith("def layers(self")  # dedented out of the class
    assert shown.data == textwrap.dedent(inspect.getsource(LeNet1.layers))
    assert "highlight" in shown._repr_html_()


def test_shows_a_function_and_a_property() -> None:
    assert show_source(select).data.startswith("def select(")
    assert "def key(self)" in show_source(GridPoint.key).data


def test_refuses_what_has_no_source() -> None:
    with pytest.raises(TypeError):
        show_source(3)
