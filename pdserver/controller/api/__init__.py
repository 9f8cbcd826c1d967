"""The controller's HTTP API: the node's routing, dispatch and error model with the controller's authorization."""
