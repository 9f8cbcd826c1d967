"""The node's link to a cloud controller: provisioning, one WAMP session, remote commands, state reports."""
