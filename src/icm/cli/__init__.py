"""The ``icm`` command: parses arguments and calls the library, nothing more."""
