"""The pytest plugin (``pytest11`` entry point ``harness.pytest.plugin``) and its fixtures."""
