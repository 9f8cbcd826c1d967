"""pdtools: the ParaDrop command line, also usable as a client library (see pdtools.client)."""
