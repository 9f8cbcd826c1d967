"""The checks of a chute request against the installed chutes, in one place: the API runs them to answer
at once (409), the change handler again when the change runs, since the queue may have changed things
while it waited."""
from pdserver import errors
from pdserver.chutes.store import ChuteRecord, ChuteStore
from pdserver.chutes.versions import is_newer


def installed(store: ChuteStore, name: str) -> ChuteRecord:
    record = store.get(name)
    if record is None:
        raise errors.NotFound(f"no chute {name} is installed", field="chute")
    return record


def name_free(store: ChuteStore, name: str) -> None:
    if store.get(name) is not None:
        raise errors.Conflict(f"chute {name} is already installed; update it with PUT /api/v1/chutes/{name}",
                              field="name", code="chute_exists")


def same_chute(name: str, chute: str) -> None:
    if name != chute:
        raise errors.InvalidInput(f"the description is of chute {name}, not {chute}", field="name")


def newer(record: ChuteRecord, version, same_version_ok: bool = False) -> None:
    if same_version_ok and str(version) == record.version:
        return
    if not is_newer(str(version), record.version):
        raise errors.Conflict(f"version {version} is not newer than the installed {record.version}",
                              field="version", code="version_not_newer")

