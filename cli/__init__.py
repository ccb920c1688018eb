"""The audioar command line (installed as the package ``audioar_cli``)."""
