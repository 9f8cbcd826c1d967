"""Operating a node: installing it as a service, checking what it can do here, backing it up."""
