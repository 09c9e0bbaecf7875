"""Test support for the CLI tests: the real `floe` binary and real `floe serve`
nodes on loopback (the Python twin of tests/support/node_process.*).

The binary comes from the environment variable FLOE_BINARY (ctest sets it to
the build's floe)."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

BINARY = os.environ.get("FLOE_BINARY", "")


class Result:
    def __init__(self, rc, out, err, elapsed, timed_out):
        self.rc = rc  # exit code; -N when killed by signal N
        self.out = out  # stdout, bytes
        self.err = err  # stderr, bytes
        self.elapsed = elapsed
        self.timed_out = timed_out

    @property
    def text(self):
        return (self.out + self.err).decode("utf-8", "replace")

    def __repr__(self):
        return "rc=%s timed_out=%s elapsed=%.2fs\nstdout: %r\nstderr: %r" % (
            self.rc, self.timed_out, self.elapsed, self.out[:2000], self.err[:2000])


def run(args, stdin=b"", timeout=10.0):
    """Runs floe with `args` (str or bytes each); kills it after `timeout` s."""
    argv = [os.fsencode(BINARY)] + [a if isinstance(a, bytes) else os.fsencode(a) for a in args]
    start = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    timed_out = False
    try:
        out, err = p.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
    return Result(p.returncode, out, err, time.monotonic() - start, timed_out)


class Node:
    """A `floe serve` child on 127.0.0.1, port 0 (the port it printed)."""

    def __init__(self, data_dir, node_id="node-1", extra=()):
        self.data_dir = data_dir
        self.node_id = node_id
        self.extra = list(extra)
        self.proc = None
        self.port = 0
        self.output = []

    def start(self, timeout=20.0):
        argv = [BINARY, "serve", "--data", self.data_dir, "--listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0",
                "--http-listen", "127.0.0.1:0", "--node-id", self.node_id]
        self.proc = subprocess.Popen(argv + self.extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        listening = threading.Event()

        def reader():
            for line in iter(self.proc.stdout.readline, b""):
                text = line.decode("utf-8", "replace")
                self.output.append(text)
                m = re.search(r"listening on [^ ]+:(\d+) ", text)
                if m:
                    self.port = int(m.group(1))
                    listening.set()

        threading.Thread(target=reader, daemon=True).start()
        if not listening.wait(timeout):
            self.kill()
            raise RuntimeError("node did not start: " + "".join(self.output))

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    @property
    def bank(self):
        return "sqlite:%s/bank.db" % self.data_dir

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class TempDir:
    def __init__(self, prefix="floe-cli-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def cleanup(self):
        if not os.environ.get("FLOE_KEEP_TEST_DIRS"):
            shutil.rmtree(self.path, ignore_errors=True)
