"""The test suite: a package, so that its modules import each other as tests.* (pytest puts the repository
root on sys.path for it; the code under test is installed in the venv, editable)."""
