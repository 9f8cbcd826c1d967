"""The example projects `pdtools chute init` writes: each a working chute, a web page served on port 8000.

project_files(name, type_, image, host_port, template) gives {relative path: text}; nothing here touches the disk.
The "web" template serves a static page; the "wifi" template runs a Wi-Fi access point and lists its clients.
Every app stops at once on SIGTERM even where it runs as PID 1 of its container (our node starts containers
with an init, but as PID 1 a process that sets no handler ignores SIGTERM and a stop waits out the timeout).
"""
import re

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
LIGHT_IMAGES = ("python3", "busybox", "node")
DEFAULT_IMAGE_REF = "paradrop/python3:latest"
PORT = 8000
TEMPLATES = ("web", "wifi")

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

_WIFI = """\
services:
  main:
    # light: the node builds an image from its python3 base with this project in /opt/chute.
    type: light
    image: python3
    command: ["python3", "app.py"]
    requests:
      # The chute's port {port} published on port {host_port} of the node.
      port-bindings:
        - external: {host_port}
          internal: {port}
    interfaces:
      # The node gives the container an interface wlan0 on a network of its own: an access point on one of
      # its radios, a subnet with DHCP for the clients (the chute has the subnet's second address).
      wlan0:
        type: wifi-ap
        dhcp:
          start: 100
          limit: 50
          leasetime: 1h
        wireless:
          ssid: "{ssid}"
          # WPA2-PSK, 8 to 63 characters: change it before installing.
          key: change-this-key
"""

_WIFI_APP_PY = '''\
"""The web server of the chute: a page on port {port} listing the clients of its access point (wlan0).

It asks the node's Edge API with the chute's own token (PARADROP_API_TOKEN), which reaches only this chute's
routes: GET /chutes/<this chute>/networks/wlan0/leases (DHCP) and .../stations (associated with the radio).
"""
import html
import http.server
import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request

PORT = {port}
NETWORK = "wlan0"


def api_get(path):
    """GET an Edge API path of this chute: (answer, None), or (None, why not)."""
    chute = urllib.parse.quote(os.environ.get("PARADROP_CHUTE_NAME", ""), safe="")
    url = f"{{os.environ['PARADROP_API_URL']}}/chutes/{{chute}}/networks/{{NETWORK}}/{{path}}"
    request = urllib.request.Request(url, headers={{"Authorization": "Bearer " + os.environ["PARADROP_API_TOKEN"]}})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer), None
    except urllib.error.HTTPError as e:
        try:
            message = json.load(e)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = e.reason
        return None, f"{{e.code}} {{message}}"
    except (OSError, ValueError) as e:
        return None, str(e)


def clients():
    leases, leases_error = api_get("leases")
    stations, stations_error = api_get("stations")
    return {{"leases": leases or [], "stations": stations or [],
            "errors": {{k: v for k, v in (("leases", leases_error), ("stations", stations_error)) if v}}}}


def table(rows, columns):
    head = "".join(f"<th>{{html.escape(title)}}</th>" for title, _ in columns)
    body = "".join("<tr>" + "".join(f"<td>{{html.escape(str(row.get(key) or ''))}}</td>" for _, key in columns)
                   + "</tr>" for row in rows)
    return f"<table><tr>{{head}}</tr>{{body or '<tr><td colspan=9>none</td></tr>'}}</table>"


def page(found):
    errors = "".join(f"<p class=error>{{html.escape(what)}}: {{html.escape(why)}}</p>"
                     for what, why in found["errors"].items())
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">'
            f"<title>Clients of {{NETWORK}}</title></head><body><h1>Clients of {{NETWORK}}</h1>{{errors}}"
            "<h2>DHCP leases</h2>"
            + table(found["leases"], [("address", "ip_addr"), ("MAC", "mac_addr"), ("name", "hostname"),
                                      ("expires (unix time)", "expires")])
            + "<h2>Stations</h2>" + table(found["stations"], [("MAC", "mac"), ("connected (s)", "connected_time"),
                                                              ("signal", "signal")])
            + "</body></html>")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        found = clients()
        if self.path == "/clients.json":
            body, kind = json.dumps(found).encode(), "application/json"
        elif self.path == "/":
            body, kind = page(found).encode(), "text/html; charset=utf-8"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    # Stop at once when the node stops the chute, even as PID 1 (which ignores SIGTERM without a handler).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with http.server.ThreadingHTTPServer(("", PORT), Handler) as server:
        print(f"listing the clients of {{NETWORK}} on port {{PORT}}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
'''

_LIGHT_COMMANDS = {
    "python3": '["python3", "app.py"]',
    "node": '["node", "server.js"]',
    # busybox httpd sets no SIGTERM handler: a shell that traps it runs httpd as its child (for PID 1).
    "busybox": '["sh", "-c", "trap \'exit 0\' TERM; httpd -f -v -p {port} -h www & wait"]',
}
_APPS = {"python3": ("app.py", _APP_PY), "node": ("server.js", _SERVER_JS), "busybox": None}
_IMAGE_SERVER = '["sh", "-c", "trap \'exit 0\' TERM; python3 -m http.server {port} --directory /data & wait"]'


def project_files(name, type_="light", image=None, host_port=PORT, template="web"):
    """The files of an example project; ValueError for a name, image or template the node would refuse."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"{name!r} is no chute name: lower-case letters, digits and '-', starting with a letter")
    values = {"name": name, "port": PORT, "host_port": host_port}
    if template == "wifi":
        if type_ != "light" or image not in (None, "python3"):
            raise ValueError("the wifi template is a light chute on python3")
        text = (_HEADER.format(description="A Wi-Fi access point with a page listing its clients", **values)
                + _WEB.format(**values) + _WIFI.format(ssid=name[:32], **values))
        return {"paradrop.yaml": text, "app.py": _WIFI_APP_PY.format(**values)}
    if template != "web":
        raise ValueError(f"the template is one of {', '.join(TEMPLATES)}, not {template!r}")
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
