"""`__all__` of the shared modules lists exactly their public names."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

from blelock import errors, model


def public_names(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", module.__name__) == module.__name__
    }


@pytest.mark.parametrize("module", [errors, model], ids=lambda m: m.__name__)
def test_all_lists_the_public_names(module: ModuleType) -> None:
    assert set(module.__all__) == public_names(module)
