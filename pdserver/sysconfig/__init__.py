"""System Configuration: host config, interfaces, Wi-Fi, DHCP, firewall and the child supervisor."""
