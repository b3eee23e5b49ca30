"""Browser tests of the web console (a package, so that its conftest does not shadow
tests/conftest.py, which other tests import as `conftest`)."""
