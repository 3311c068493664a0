"""Every docstring example of the package runs and prints what it shows (the examples are
part of the documentation: they must not rot)."""

import doctest
import importlib
import pkgutil

import pytest

import deepinv_pnn

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(deepinv_pnn.__path__, prefix="deepinv_pnn.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_examples_are_found():
    finder = doctest.DocTestFinder()
    examples = sum(
        len(test.examples) for name in MODULES for test in finder.find(importlib.import_module(name))
    )
    assert len(MODULES) >= 60 and examples >= 200, (len(MODULES), examples)  # 68 and 233 now
