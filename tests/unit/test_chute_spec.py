"""paradrop.yaml: both forms, validation errors that name the field, versions, safe unpacking, and hostile
archives and descriptions."""
import gzip
import io
import struct
import tarfile
import tracemalloc
import zlib

import pytest

from pdserver.chutes.source import MAX_HEADER_BYTES, SourceError, extract_project
from pdserver.chutes.spec import SpecError, build, load_yaml
from pdserver.chutes.versions import is_newer
from tests.unit.test_parsing import BOMB

MULTI = """
name: hello-web
version: 2
description: says hi
environment: {GREETING: hi}
web: {service: main, port: 8000}
services:
  main:
    type: light
    image: python3
    command: python3 -m http.server 8000
    environment: {MODE: prod, DEBUG: false}
    requests:
      port-bindings: [{external: 8001, internal: 8000}]
      cpu-fraction: 0.5
      memory: 64M
  db:
    type: image
    image: paradrop/busybox:latest
    command: [sleep, "3600"]
"""


def test_multi_service_form_is_normalised():
    chute = build(load_yaml(MULTI))
    assert chute.name == "hello-web" and chute.version == "2"
    assert [s.name for s in chute.services] == ["db", "main"]
    main = chute.service("main")
    assert main.memory == 64 * 1024 * 1024 and main.cpu_fraction == 0.5
    assert main.port_bindings[0].external == 8001
    assert dict(main.environment) == {"MODE": "prod", "DEBUG": "false"}
    assert chute.service("db").command == ("sleep", "3600")
    assert chute.web_service == "main" and chute.web_port == 8000


def test_legacy_single_service_form_becomes_service_main():
    chute = build(load_yaml("""
name: old-style
version: 1
type: light
use: python3
command: python3 -u main.py
config:
  web: {port: 5000}
  environment: {A: b}
  host_config: {port_bindings: {"5000/tcp": 8080}}
"""))
    main = chute.service("main")
    assert main.type == "light" and main.image == "python3"
    assert main.port_bindings[0].internal == 5000 and main.port_bindings[0].external == 8080
    assert chute.web_port == 5000 and chute.web_service == "main"


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["services"]["main"]["requests"]["port-bindings"][0].update(external="x"),
     "services.main.requests.port-bindings[0].external"),
    (lambda d: d.update(name="Bad_Name"), "name"),
    (lambda d: d["services"]["main"].update(image="ruby"), "services.main.image"),
    (lambda d: d["services"]["main"].pop("command"), "services.main.command"),
    (lambda d: d["services"]["main"].update(colour="red"), "services.main.colour"),
    (lambda d: d.update(web={"service": "nope", "port": 80}), "web.service"),
    (lambda d: d["services"]["db"].update(requests={"port-bindings": [{"external": 8001, "internal": 1}]}),
     "services.db.requests.port-bindings[0].external"),
])
def test_errors_name_the_field(mutate, field):
    data = load_yaml(MULTI)
    mutate(data)
    with pytest.raises(SpecError) as info:
        build(data)
    assert info.value.field == field, info.value.message


def test_versions_compare_numerically_when_numeric():
    assert is_newer("10", "9")
    assert is_newer("1.10", "1.9")
    assert not is_newer("2", "2")
    assert is_newer("2.0.1", "2.0")


def tar_of(files, links=()):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    buf.seek(0)
    return buf


def test_a_project_unpacks_and_a_top_level_folder_is_accepted(tmp_path):
    root = extract_project(tar_of({"paradrop.yaml": b"x", "src/app.py": b"print(1)"}), tmp_path / "a", 10 ** 6)
    assert (root / "src/app.py").read_bytes() == b"print(1)"
    root = extract_project(tar_of({"proj/paradrop.yaml": b"x"}), tmp_path / "b", 10 ** 6)
    assert root == tmp_path / "b" and (root / "paradrop.yaml").is_file()


@pytest.mark.parametrize("files, links, reason", [
    ({"paradrop.yaml": b"x", "../evil": b"x"}, (), "outside"),
    ({"paradrop.yaml": b"x", "/etc/evil": b"x"}, (), "outside"),
    ({"paradrop.yaml": b"x"}, [("link", "../../etc/passwd")], "outside"),
    ({"paradrop.yaml": b"x"}, [("link", "/etc/passwd")], "outside"),
    ({"paradrop.yaml": b"x" * 2000}, (), "larger"),
    ({"README": b"x"}, (), "paradrop.yaml"),
])
def test_bad_archives_are_refused_and_leave_nothing(tmp_path, files, links, reason):
    with pytest.raises(SourceError, match=reason):
        extract_project(tar_of(files, links), tmp_path / "x", 1000)
    assert not (tmp_path / "x").exists()


def test_garbage_is_not_an_archive(tmp_path):
    with pytest.raises(SourceError, match="not a tar"):
        extract_project(io.BytesIO(b"this is not a tar file at all" * 100), tmp_path / "x", 1000)


def gnu_long_name_bomb(size: int) -> bytes:
    """A gzip tar whose first member is a GNU long-name header with ``size`` bytes of name: each MiB of name
    deflates (after a full flush) to the same block, so a 1 GiB name packs into about 1 MB quickly."""
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, size
    header, chunk = info.tobuf(format=tarfile.GNU_FORMAT), b"a" * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(header)
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + head + block * (size // len(chunk))
            + compressor.flush() + struct.pack("<II", crc, (len(header) + size) & 0xFFFFFFFF))


def test_the_bomb_is_a_valid_gzip_stream_of_the_claimed_size():
    assert len(gzip.decompress(gnu_long_name_bomb(4 << 20))) == 512 + (4 << 20)


def member(name, data=b"", kind=tarfile.REGTYPE, linkname="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def archive(*members, format=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=format) as tar:
        for info, data in members:
            tar.addfile(info, data)
    return buf.getvalue()


GOOD = archive(member("paradrop.yaml", b"name: x\n"), member("src/app.py", b"print(1)\n" * 200))


class TestHostileArchives:
    def refused(self, tmp_path, data, match, max_bytes=10 ** 6, max_files=10000):
        with pytest.raises(SourceError, match=match) as info:
            extract_project(io.BytesIO(data), tmp_path / "x", max_bytes, max_files)
        assert info.value.field == "archive"
        assert not (tmp_path / "x").exists()
        return info.value

    def test_a_gnu_long_name_bomb_is_refused_before_its_name_is_read(self, tmp_path):
        bomb = gnu_long_name_bomb(1 << 30)
        assert len(bomb) < 1_100_000
        tracemalloc.start()
        try:
            self.refused(tmp_path, bomb, "extended header of 1073741824 bytes")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 10_000_000

    @pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE])
    def test_other_extended_headers_are_capped_too(self, tmp_path, kind):
        info = tarfile.TarInfo("header")
        info.type, info.size = kind, MAX_HEADER_BYTES + 1
        data = info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * (MAX_HEADER_BYTES + 512)
        self.refused(tmp_path, data, "extended header")

    def test_long_names_within_the_cap_unpack(self, tmp_path):
        name = "d" * 200 + "/" + "f" * 200
        data = archive(member("paradrop.yaml", b"x"), member(name, b"long"), format=tarfile.GNU_FORMAT)
        assert (extract_project(io.BytesIO(data), tmp_path / "x", 10 ** 6) / name).read_bytes() == b"long"

    @pytest.mark.parametrize("cut", [512 + 512 + 100, 512 * 3 + 200, 1024])
    def test_truncated_archives_and_members_are_refused(self, tmp_path, cut):
        self.refused(tmp_path, GOOD[:cut], "truncated")

    def test_a_truncated_gzip_stream_is_refused(self, tmp_path):
        data = gzip.compress(GOOD)
        self.refused(tmp_path, data[:len(data) // 2], "truncated")

    def test_an_empty_upload_is_refused(self, tmp_path):
        self.refused(tmp_path, b"", "truncated")

    @pytest.mark.parametrize("entry, match", [
        (member("h", kind=tarfile.LNKTYPE, linkname="paradrop.yaml"), "hard link"),
        (member("fifo", kind=tarfile.FIFOTYPE), "special file"),
        (member("dev", kind=tarfile.CHRTYPE), "special file"),
        (member("up", kind=tarfile.SYMTYPE, linkname="a/../../x"), "outside"),
        (member("a/../../x", b"x"), "outside"),
    ])
    def test_members_the_data_filter_or_our_rules_refuse(self, tmp_path, entry, match):
        self.refused(tmp_path, archive(member("paradrop.yaml", b"x"), entry), match)

    def test_the_data_filter_drops_setuid_and_group_write_bits(self, tmp_path):
        data = archive(member("paradrop.yaml", b"x"), member("run.sh", b"#!/bin/sh\n", mode=0o6777))
        root = extract_project(io.BytesIO(data), tmp_path / "x", 10 ** 6)
        assert (root / "run.sh").stat().st_mode & 0o7777 == 0o755

    def test_the_file_count_limit_holds(self, tmp_path):
        data = archive(*[member(f"f{i}", b"") for i in range(11)])
        self.refused(tmp_path, data, "more than 10 files", max_files=10)

    def test_sizes_claimed_by_headers_count_before_anything_is_read(self, tmp_path):
        info = tarfile.TarInfo("huge")
        info.size = 2 ** 40
        self.refused(tmp_path, info.tobuf(format=tarfile.GNU_FORMAT), "larger than")


class TestHostileDescriptions:
    def description(self, **service):
        return {"name": "x", "version": 1, "services": {"main": {"type": "image", "image": "i", **service}}}

    def test_a_5_mb_description_comes_back_as_a_short_error(self):
        with pytest.raises(SpecError) as info:
            build({**self.description(), "description": "d" * 5_000_000})
        assert info.value.field == "description" and len(info.value.message) < 200

    @pytest.mark.parametrize("service, field", [
        ({"command": "c" * 5000}, "services.main.command"),
        ({"command": ["c"] * 65}, "services.main.command"),
        ({"environment": {f"V{i}": "x" for i in range(65)}}, "services.main.environment"),
        ({"environment": {"V": "x" * 5000}}, "services.main.environment.V"),
        ({"environment": {"V" * 150: "x"}}, "services.main.environment." + "V" * 150),
        ({"image": "i" * 300}, "services.main.image"),
        ({"requests": {"memory": "9" * 40 + "G"}}, "services.main.requests.memory"),
        ({"requests": {"memory": "999999999G"}}, "services.main.requests.memory"),
        ({"healthcheck": {"test": "t", "retries": 10 ** 6}}, "services.main.healthcheck.retries"),
    ])
    def test_every_field_has_a_size_limit(self, service, field):
        with pytest.raises(SpecError) as info:
            build(self.description(**service))
        assert info.value.field == field and len(info.value.message) < 500

    def test_the_whole_description_is_capped(self):
        services = {f"s{i}": {"type": "image", "image": "i", "command": ["c" * 4000] * 2} for i in range(10)}
        with pytest.raises(SpecError, match="bytes as JSON"):
            build({"name": "x", "version": 1, "services": services})

    def test_a_yaml_alias_bomb_never_reaches_the_schema(self):
        with pytest.raises(SpecError) as info:
            load_yaml(BOMB)
        assert info.value.field == "paradrop.yaml"

    @pytest.mark.parametrize("text, field", [("version: 99999999999999999999\n", "version"),
                                             ("memory: 1180591620717411303424\n", "memory")])
    def test_huge_integers_in_yaml_name_their_field(self, text, field):
        with pytest.raises(SpecError) as info:
            load_yaml(text)
        assert info.value.field == field

    @pytest.mark.parametrize("bindings", ["{abc/tcp: 80}", "{80: [1]}", "[1, 2]", "{80: 999999}"])
    def test_bad_legacy_port_bindings_are_refused_naming_the_field(self, bindings):
        with pytest.raises(SpecError) as info:
            build(load_yaml(f"name: x\nversion: 1\ntype: light\nuse: python3\ncommand: c\n"
                            f"config: {{host_config: {{port_bindings: {bindings}}}}}\n"))
        assert info.value.field.startswith("config.host_config.port_bindings") \
            or info.value.field.startswith("services.main.requests")


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(name="hello\n"), "name"),
    (lambda d: d["services"]["main"].update(environment={"KEY\n": "v"}), "services.main.environment"),
    (lambda d: d["services"]["main"].update(dns=["9.9.9.9\n"]), "services.main.dns[0]"),
    (lambda d: d.update(version="1.0\n"), "version"),
])
def test_a_trailing_newline_never_passes_a_pattern(mutate, field):
    """JSON Schema's ``$`` is the end of the string; Python's also matches before a final newline."""
    data = {"name": "hello", "version": 1, "services": {"main": {"type": "image", "image": "paradrop/busybox"}}}
    mutate(data)
    with pytest.raises(SpecError) as caught:
        build(data)
    assert caught.value.field.startswith(field.split("[")[0]), caught.value.field
