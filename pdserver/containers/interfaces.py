"""IContainerEngine: what the execution engine may ask of a container engine. DockerEngine provides it; an
in-memory stand-in for unit tests should be checked against it with zope.interface.verify.verifyObject."""
from zope.interface import Interface


class IContainerEngine(Interface):
    """Every method returns a Deferred; failures are pdserver.containers.errors.EngineError subclasses.
    An object's owner is the value of the engine's owner label in its labels (the node that made it)."""

    def ping():
        """-> the engine's version string."""

    def image_exists(ref):
        """-> bool."""

    def image_labels(ref):
        """-> the image's labels, or None when there is no such image."""

    def pull_image(ref, progress=None):
        """-> image id; ImageUnavailable when the registry cannot give it."""

    def build_image(context_dir, tag, labels, progress=None, dockerfile="Dockerfile"):
        """-> image id; BuildFailed naming the failing step. Every layer carries the owner's label."""

    def remove_image(ref):
        """Nothing if absent; InUse while a container uses it."""

    def create_network(name, labels, subnet=None):
        """-> network id; idempotent for its owner, Conflict for a network of another owner."""

    def network_gateway(name):
        """-> the host's IPv4 address on the network; NotFound if there is no such network."""

    def remove_network(name):
        """Disconnects containers first; nothing if absent."""

    def create_volume(name, labels):
        """-> volume name; idempotent for its owner, Conflict for a volume of another owner."""

    def remove_volume(name):
        """Nothing if absent; InUse while a container mounts it."""

    def create_container(spec):
        """-> container id (not started); Conflict if the name is taken."""

    def start_container(name):
        """Conflict when a published host port is taken."""

    def stop_container(name, timeout=10):
        """SIGTERM, then SIGKILL after timeout seconds."""

    def remove_container(name):
        """Force-remove; nothing if absent."""

    def rename_container(old, new):
        """Conflict if ``new`` is taken."""

    def inspect_container(name):
        """-> ContainerState, or None when there is no such container."""

    def list_objects(label):
        """-> {"containers"|"networks"|"volumes"|"images": [(name, labels), ...]} for objects carrying label."""

    def logs(name, tail=100, timestamps=False):
        """-> list of output lines."""

    def follow_logs(name, on_line, tail=0, timestamps=False):
        """-> a LogFollower (``stop()``, ``done``) once the stream is open."""

    def follow_events(on_event, label, actions=("start", "die")):
        """-> an event follower (``stop()``, ``done``) once the stream is open: ``on_event(ContainerEvent)`` for
        each of ``actions`` that happens from then on to a container carrying ``label`` (a key, or key=value).
        ``done`` fires when the stream ends (the engine went away, say): events meanwhile are not replayed."""
