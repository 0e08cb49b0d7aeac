"""Shared fixtures: the repository root and the committed generated package."""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "generated"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def ag():
    """The committed generated package ``actgen_numpy``, imported from generated/."""
    if str(GENERATED) not in sys.path:
        sys.path.insert(0, str(GENERATED))
    return importlib.import_module("actgen_numpy")


@pytest.fixture(scope="session")
def catalog() -> dict:
    """generated/catalog.json: the list of generated functions, so new ones are tested automatically."""
    return json.loads((GENERATED / "catalog.json").read_text(encoding="utf-8"))
