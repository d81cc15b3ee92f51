"""The ``ssp`` command line: ``main`` builds the parser from one module per wing (and installed plugins)."""
