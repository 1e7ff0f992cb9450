"""Shared fixtures: the book's site, built once per test session."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def site_html(tmp_path_factory) -> Path:
    """The committed book built with ``jupyter-book build --all -W`` into a temporary folder (once
    for every test that reads the site); its HTML folder.  ``SYMLIB_TEST_SITE=<html folder>`` reuses
    a site already built (local runs only; CI builds it)."""
    from symlib import book
    if os.environ.get("SYMLIB_TEST_SITE"):
        return Path(os.environ["SYMLIB_TEST_SITE"])
    return book.build_site(book.REPO, output=tmp_path_factory.mktemp("site"))
