"""Presentation: every table (pandas) and figure (matplotlib) of the book, from what
:mod:`lenet1.experiments` computed. Nothing here trains, and nothing below imports it."""
