"""The package has one version: `spqindex.__version__` is what the installed metadata says."""

import importlib.metadata

import spqindex


def test_version_matches_installed_metadata():
    assert spqindex.__version__ == importlib.metadata.version("spqindex")
