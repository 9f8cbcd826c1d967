"""The Edge API: ParaDrop v1 paths over Klein, one module per resource."""
