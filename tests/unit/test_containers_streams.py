"""Parsers of the engine's streams, and the translation of SDK failures, without an engine."""
import docker
import pytest
from zope.interface.verify import verifyObject

from pdserver.containers.engine import DockerEngine, container_state
from pdserver.containers.errors import EngineUnavailable
from pdserver.containers.interfaces import IContainerEngine
from pdserver.containers.streams import BuildOutput, LineSplitter, PullProgress


def test_line_splitter_joins_chunks_and_keeps_the_unfinished_line():
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntw") == ["one"]
    assert splitter.feed(b"o\r\nthree\n\xff\n") == ["two", "three", "\ufffd"]
    assert splitter.feed(b"tail") == []
    assert splitter.flush() == ["tail"]
    assert splitter.flush() == []


BUILD = [{"stream": "Step 1/3 : FROM base"}, {"stream": "\n"}, {"stream": " ---> 44a7ddc8e075\n"},
         {"stream": "Step 2/3 : RUN make"}, {"stream": "\n"}, {"stream": " ---> Running in 1399cf9564e3\n"},
         {"stream": "compiling\n"}, {"stream": "Removing intermediate container 1399cf9564e3\n"},
         {"stream": " ---> 9b69fd4ef631\n"}, {"stream": "Step 3/3 : RUN exit 3"}, {"stream": "\n"},
         {"stream": " ---> Running in 4c72757fbde8\n"}, {"stream": "oops\n"},
         {"errorDetail": {"code": 3, "message": "The command '/bin/sh -c exit 3' returned a non-zero code: 3"},
          "error": "The command '/bin/sh -c exit 3' returned a non-zero code: 3"}]


def test_build_output_reports_steps_and_names_the_failing_one():
    output = BuildOutput("app:1")
    messages = [m for chunk in BUILD for m in output.feed(chunk)] + output.finish()
    assert messages == ["building image app:1 (step 1/3): FROM base", "building image app:1 (step 2/3): RUN make",
                        "building image app:1 (step 3/3): RUN exit 3"]
    assert output.created_layers == ["9b69fd4ef631"]  # not the cached FROM image
    message = output.failure_message()
    assert message.startswith("building image app:1 failed at step 3/3 (RUN exit 3): The command "
                              "'/bin/sh -c exit 3' returned a non-zero code: 3\nlast output:\n")
    assert message.endswith("compiling\nRemoving intermediate container 1399cf9564e3\n ---> 9b69fd4ef631\n"
                            "Step 3/3 : RUN exit 3\n ---> Running in 4c72757fbde8\noops")


def test_build_output_takes_the_image_id():
    output = BuildOutput("app:1")
    output.feed({"aux": {"ID": "sha256:abc"}})
    assert output.image_id == "sha256:abc" and output.error is None


def test_pull_progress_skips_byte_counters_and_repeats():
    progress = PullProgress("busybox:1")
    items = [{"status": "Pulling from library/busybox", "id": "1"}, {"status": "Pulling fs layer", "id": "a1"},
             {"status": "Downloading", "id": "a1", "progress": "[=>  ]"}, {"status": "Downloading", "id": "a1"},
             {"status": "Pull complete", "id": "a1"}, {"status": "Pull complete", "id": "a1"},
             {"status": "Status: Downloaded newer image for busybox:1"}]
    assert [m for item in items for m in progress.feed(item)] == [
        "pulling image busybox:1: 1 Pulling from library/busybox", "pulling image busybox:1: a1 Pulling fs layer",
        "pulling image busybox:1: a1 Pull complete",
        "pulling image busybox:1: Status: Downloaded newer image for busybox:1"]


def test_an_engine_that_does_not_answer_says_to_start_it():
    engine = DockerEngine(reactor=None, client_factory=lambda: docker.DockerClient(
        base_url="unix:///nonexistent/docker.sock"))
    with pytest.raises(EngineUnavailable, match="run tools/start-engine"):
        engine._thd_guarded(engine._thd_ping)


def test_container_state_of_a_restarting_container():
    attrs = {"Id": "c1", "Name": "/web", "Image": "sha256:1", "RestartCount": 2,
             "Config": {"Image": "busybox", "Labels": None},
             "State": {"Status": "restarting", "Running": True, "Restarting": True, "ExitCode": 3,
                       "StartedAt": "2026-01-01T00:00:00Z",
                       "Health": {"Status": "unhealthy", "Log": [{"Output": "no\n"}]}},
             "NetworkSettings": {"Networks": {"net": {"IPAddress": ""}, "bridge": {"IPAddress": "172.17.0.2"}}}}
    state = container_state(attrs)
    assert (state.name, state.image, state.status, state.running, state.exit_code) == (
        "web", "busybox", "restarting", False, 3)
    assert (state.health, state.health_output, state.restart_count, state.labels, state.addresses) == (
        "unhealthy", "no", 2, {}, {"bridge": "172.17.0.2"})


def test_docker_engine_provides_the_container_engine_interface():
    assert verifyObject(IContainerEngine, DockerEngine(reactor=None))
