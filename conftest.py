"""Root conftest: nothing the plugin should own lives here."""
