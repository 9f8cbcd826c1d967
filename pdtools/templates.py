"""The example projects `pdtools chute init` writes: each a working chute, a web page served on port 8000.

project_files(name, type_, image, host_port) gives {relative path: text}; nothing here touches the disk.
Every app stops at once on SIGTERM even where it runs as PID 1 of its container (our node starts containers
with an init, but as PID 1 a process that sets no handler ignores SIGTERM and a stop waits out the timeout).
"""
import re

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
LIGHT_IMAGES = ("python3", "busybox", "node")
DEFAULT_IMAGE_REF = "paradrop/python3:latest"
PORT = 8000

_HEADER = """\
# The description of chute {name}: check it with `pdtools chute validate`, install it on a node with
# `pdtools node install-chute` and, after changing the version, update it with `pdtools node update-chute`.
name: {name}
version: 1
description: {description}
"""

_WEB = """\
# The service and port of the chute's web interface: the node waits for an HTTP answer there at start.
web:
  service: main
  port: {port}
"""

_LIGHT = """\
services:
  main:
    # light: the node builds an image from its {image} base with this project in /opt/chute.
    type: light
    image: {image}
    command: {command}
    requests:
      # The chute's port {port} published on port {host_port} of the node.
      port-bindings:
        - external: {host_port}
          internal: {port}
"""

_IMAGE = """\
services:
  main:
    # image: the node runs this image as it is (no project files; /data is the chute's persistent volume).
    type: image
    image: {image}
"""

_IMAGE_COMMAND = """\
    command: {command}
    requests:
      port-bindings:
        - external: {host_port}
          internal: {port}
"""

_INDEX_HTML = """\
<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>{name}</title></head>
<body>
<h1>Hello from chute {name}</h1>
<p>Edit www/index.html, raise the version in paradrop.yaml and run <code>pdtools node update-chute</code>.</p>
</body>
</html>
"""

_APP_PY = '''\
"""The web server of the chute: serves the files in www/ on port {port}."""
import functools
import http.server
import os
import signal
import sys

PORT = {port}
WWW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "www")


def main():
    # Stop at once when the node stops the chute, even as PID 1 (which ignores SIGTERM without a handler).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=WWW)
    with http.server.ThreadingHTTPServer(("", PORT), handler) as server:
        print(f"serving {{WWW}} on port {{PORT}}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
'''

_SERVER_JS = """\
// The web server of the chute: serves www/index.html on port {port}.
const fs = require("fs");
const http = require("http");
const path = require("path");

const PORT = {port};
const page = path.join(__dirname, "www", "index.html");

// Stop at once when the node stops the chute, even as PID 1 (which ignores SIGTERM without a handler).
process.on("SIGTERM", () => process.exit(0));

http.createServer((request, response) => {{
  console.log(`${{request.method}} ${{request.url}}`);
  fs.readFile(page, (error, data) => {{
    response.writeHead(error ? 500 : 200, {{"Content-Type": "text/html; charset=utf-8"}});
    response.end(error ? String(error) : data);
  }});
}}).listen(PORT, () => console.log(`serving ${{page}} on port ${{PORT}}`));
"""

_LIGHT_COMMANDS = {
    "python3": '["python3", "app.py"]',
    "node": '["node", "server.js"]',
    # busybox httpd sets no SIGTERM handler: a shell that traps it runs httpd as its child (for PID 1).
    "busybox": '["sh", "-c", "trap \'exit 0\' TERM; httpd -f -v -p {port} -h www & wait"]',
}
_APPS = {"python3": ("app.py", _APP_PY), "node": ("server.js", _SERVER_JS), "busybox": None}
_IMAGE_SERVER = '["sh", "-c", "trap \'exit 0\' TERM; python3 -m http.server {port} --directory /data & wait"]'


def project_files(name, type_="light", image=None, host_port=PORT):
    """The files of an example project; ValueError for a name or image the node would refuse."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"{name!r} is no chute name: lower-case letters, digits and '-', starting with a letter")
    values = {"name": name, "port": PORT, "host_port": host_port}
    if type_ == "light":
        image = image or "python3"
        if image not in LIGHT_IMAGES:
            raise ValueError(f"a light chute is built on {', '.join(LIGHT_IMAGES)}, not {image!r}")
        command = _LIGHT_COMMANDS[image].format(port=PORT)
        text = (_HEADER.format(description=f"A web page served by {image}", **values) + _WEB.format(**values)
                + _LIGHT.format(image=image, command=command, **values))
        files = {"paradrop.yaml": text, "www/index.html": _INDEX_HTML.format(**values)}
        if _APPS[image]:
            path, template = _APPS[image]
            files[path] = template.format(**values)
        return files
    if type_ == "image":
        image = image or DEFAULT_IMAGE_REF
        serves = image == DEFAULT_IMAGE_REF
        description = "The files in /data served by python3" if serves else f"The image {image}"
        text = _HEADER.format(description=description, **values)
        if serves:
            text += _WEB.format(**values)
        text += _IMAGE.format(image=image)
        if serves:
            text += _IMAGE_COMMAND.format(command=_IMAGE_SERVER.format(port=PORT), **values)
        return {"paradrop.yaml": text}
    raise ValueError(f"chute type must be light or image, not {type_!r}")


def default_name(directory_name):
    """A chute name made from a directory name ("My Chute" -> "my-chute"), or None if nothing is left."""
    name = re.sub(r"[^a-z0-9-]+", "-", directory_name.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name)[:63].rstrip("-")
    return name if NAME_PATTERN.match(name) else None
