"""Secret files in the state dir: created with mode 0600 from the first byte."""
import os
import secrets as _random
from pathlib import Path


def write_secret_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def load_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """The node's signing secret: random on first start, the same ever after."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = _random.token_urlsafe(nbytes)
    write_secret_file(path, value + "\n")
    return value


def random_password() -> str:
    return _random.token_urlsafe(15)
