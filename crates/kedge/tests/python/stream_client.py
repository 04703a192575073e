"""The official Python client's exec and port-forward against a kedge pod.

Run by crates/kedge/tests/agent_python_client.rs as
`python stream_client.py KUBECONFIG NAMESPACE POD`. It prints one JSON
object with what it saw; the Rust test asserts on it. Every call has a
timeout so that a stuck stream fails the test instead of hanging it.
"""

import json
import socket
import sys
import time

from kubernetes import client, config
from kubernetes.stream import portforward, stream

TIMEOUT = 20  # seconds, for each stream


def main():
    kubeconfig, namespace, pod = sys.argv[1:4]
    api = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api)
    seen = {}

    # Non-interactive: the client collects stdout and stderr until the
    # server closes the stream.
    seen["exec_output"] = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=["sh", "-c", "echo to-stdout; echo to-stderr >&2"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _request_timeout=TIMEOUT,
    )

    # Interactive: stdin in, stdout back, the exit code from the error
    # channel's Status.
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=["sh", "-c", "read line; echo got-$line; echo oops >&2; exit 7"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.write_stdin("ping\n")
    stdout, stderr = "", ""
    deadline = time.time() + TIMEOUT
    while resp.is_open() and time.time() < deadline:
        resp.update(timeout=1)
        stdout += resp.read_stdout(timeout=0) or ""
        stderr += resp.read_stderr(timeout=0) or ""
    seen["interactive_open_at_end"] = resp.is_open()
    seen["interactive_stdout"] = stdout
    seen["interactive_stderr"] = stderr
    seen["interactive_returncode"] = resp.returncode
    resp.close()

    # A command that succeeds: returncode 0 from a Success Status.
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=["true"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=TIMEOUT)
    seen["true_returncode"] = resp.returncode
    resp.close()

    # A TTY, resized through channel 4: `stty size` inside sees it.
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=["sh", "-c", 'while read x; do [ "$x" = q ] && exit 0; stty size; done'],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=True,
        _preload_content=False,
    )
    resp.write_channel(4, json.dumps({"Width": 123, "Height": 45}))
    output = ""
    deadline = time.time() + TIMEOUT
    while resp.is_open() and "45 123" not in output and time.time() < deadline:
        resp.write_stdin("a\n")
        resp.update(timeout=0.5)
        output += resp.read_stdout(timeout=0) or ""
    resp.write_stdin("q\n")
    resp.run_forever(timeout=TIMEOUT)
    output += resp.read_stdout(timeout=0) or ""
    seen["tty_output"] = output
    seen["tty_returncode"] = resp.returncode
    resp.close()

    # Port-forward: an HTTP GET to busybox httpd in the pod, twice (each
    # portforward() call is a new WebSocket connection).
    seen["portforward"] = []
    for _ in range(2):
        pf = portforward(
            core.connect_get_namespaced_pod_portforward,
            pod,
            namespace,
            ports="8080",
        )
        sock = pf.socket(8080)
        sock.settimeout(TIMEOUT)
        sock.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        response = b""
        while True:
            try:
                chunk = sock.recv(4096)
            except socket.timeout:
                break
            if not chunk:
                break
            response += chunk
        sock.close()
        seen["portforward"].append(
            {"response": response.decode("utf-8", "replace"), "error": pf.error(8080)}
        )

    # A port nothing listens on: the runtime dials it as the stream opens,
    # the connection closes and the port's error channel says why.
    pf = portforward(
        core.connect_get_namespaced_pod_portforward,
        pod,
        namespace,
        ports="9999",
    )
    sock = pf.socket(9999)
    sock.settimeout(TIMEOUT)
    try:
        seen["closed_port_data"] = sock.recv(4096).decode("utf-8", "replace")
    except socket.timeout:
        seen["closed_port_data"] = "timed out"
    except OSError as e:
        seen["closed_port_data"] = str(e)
    sock.close()
    deadline = time.time() + TIMEOUT
    while pf.error(9999) is None and time.time() < deadline:
        time.sleep(0.05)
    seen["closed_port_error"] = pf.error(9999)

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
