"""The links present (netlink.thd_devices), listed by a child python for the node's first start.

The daemon needs that list once in its life, to write its first host config; pyroute2 would then stay in its
memory for good (about 9 MB of an idle node's RSS). A child pays it and exits. Run as a module, it prints the
list as JSON: ``python -m pdserver.sysconfig.device_list [NETNS]``.
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from pdserver.errors import Unavailable

TIMEOUT = 60.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding pdserver/


def thd_devices(netns: Optional[str] = None, timeout: float = TIMEOUT) -> List[dict]:
    """What netlink.thd_devices(netns) answers, from a child; Unavailable when the child fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    argv = [sys.executable, "-m", __name__] + ([netns] if netns is not None else [])
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=True)
    except subprocess.CalledProcessError as e:
        lines = e.stderr.strip().splitlines()
        raise Unavailable(f"listing the links failed: {lines[-1] if lines else f'exit {e.returncode}'}") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"listing the links took more than {timeout:g} s") from None
    return json.loads(out.stdout)


def main(argv: List[str]) -> None:
    from pdserver.sysconfig import netlink
    json.dump(netlink.thd_devices(argv[0] if argv else None), sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
