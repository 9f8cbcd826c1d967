"""The check on a Linux link name, apart from netlink so that code which only names links (firewall rules, file
names) does not import pyroute2."""
import re

from pdserver.errors import InvalidInput

# What the kernel takes as a link name, without ':' and '/', and never an option of a command line ('-x').
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}$")


def check_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(f"{name!r} is not a valid interface name (1-15 of A-Z a-z 0-9 _ . @ -, starting with a "
                           "letter or digit)", field=field)
    return name
