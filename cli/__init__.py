"""The ``eventsnn`` command-line application (installed as ``eventsnn.cli``)."""
