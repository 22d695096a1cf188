#!/usr/bin/python3
"""Small, harmless actions the corpus scenarios run inside their runner
process (testbed/corpus/record.py): the parts a shell one-liner cannot do
(memfd and deleted-file execs, a ptrace attach, a connect sweep, a
netcat stand-in). Every action works on loopback and on files under the
work directory it is given; nothing persists.

    actions.py memfd                     exec /bin/true from a memfd
    actions.py deleted WORKDIR           exec a copy of /bin/true after unlinking it
    actions.py ptrace                    PTRACE_ATTACH to our own `sleep` child, then detach
    actions.py portscan HOST FIRST COUNT connect to COUNT consecutive ports (closed: refused)
    actions.py connect HOST PORT         one connect (refused is fine)
    actions.py nc [-e PROG] HOST PORT    netcat stand-in: connect; pipe stdio, or run PROG on the socket
    actions.py nc -l HOST PORT           netcat stand-in: accept one connection, print what it sends
    actions.py listen HOST PORT SECONDS  bind and listen, accept nothing, close after SECONDS
"""

import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time


def memfd():
    fd = os.memfd_create("hf-corpus", 0)
    with open("/bin/true", "rb") as f:
        os.write(fd, f.read())
    pid = os.fork()
    if pid == 0:
        os.execve(fd, ["hf-memfd"], {})
    os.waitpid(pid, 0)
    os.close(fd)


def deleted(work):
    path = os.path.join(work, "hf-deleted-true")
    shutil.copy("/bin/true", path)
    os.chmod(path, 0o755)
    fd = os.open(path, os.O_RDONLY)
    os.unlink(path)
    pid = os.fork()
    if pid == 0:
        os.execve(fd, ["hf-deleted"], {})
    os.waitpid(pid, 0)
    os.close(fd)


def ptrace():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    PTRACE_ATTACH, PTRACE_DETACH = 16, 17
    child = subprocess.Popen(["sleep", "5"])
    try:
        time.sleep(0.2)
        if libc.ptrace(PTRACE_ATTACH, child.pid, None, None) != 0:
            print(f"ptrace attach failed: errno {ctypes.get_errno()}", file=sys.stderr)
            return
        os.waitpid(child.pid, 0)
        libc.ptrace(PTRACE_DETACH, child.pid, None, None)
    finally:
        child.kill()
        child.wait()


def portscan(host, first, count):
    for port in range(first, first + count):
        with socket.socket() as s:
            s.settimeout(0.2)
            try:
                s.connect((host, port))
            except OSError:
                pass


def connect(host, port):
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect((host, port))
        except OSError:
            pass


def pump(sock):
    """stdin -> socket, socket -> stdout, until the socket closes."""
    sock.settimeout(None)
    inputs = [sock, sys.stdin.fileno()]
    deadline = time.time() + 15
    while time.time() < deadline:
        ready, _, _ = select.select(inputs, [], [], 0.5)
        for r in ready:
            if r is sock:
                data = sock.recv(4096)
                if not data:
                    return
                os.write(sys.stdout.fileno(), data)
            else:
                data = os.read(r, 4096)
                if not data:
                    inputs.remove(r)
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                else:
                    sock.sendall(data)


def nc(args):
    program = None
    listen = False
    rest = []
    i = 0
    while i < len(args):
        if args[i] == "-e":
            program = args[i + 1]
            i += 2
            continue
        if args[i] == "-l":
            listen = True
        else:
            rest.append(args[i])
        i += 1
    host, port = rest[0], int(rest[1])
    if listen:
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((host, port))
            server.listen(1)
            server.settimeout(10)
            conn, _ = server.accept()
            with conn:
                pump(conn)
        return
    sock = socket.create_connection((host, port), timeout=5)
    if program:
        fd = sock.fileno()
        for target in (0, 1, 2):
            os.dup2(fd, target)
        os.execv(program, [program])
    pump(sock)


def listen(host, port, seconds):
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(1)
        time.sleep(seconds)


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    if name == "nc":  # run as the netcat stand-in (a copy named nc)
        return nc(args)
    action, args = args[0], args[1:]
    if action == "memfd":
        memfd()
    elif action == "deleted":
        deleted(args[0])
    elif action == "ptrace":
        ptrace()
    elif action == "portscan":
        portscan(args[0], int(args[1]), int(args[2]))
    elif action == "connect":
        connect(args[0], int(args[1]))
    elif action == "nc":
        nc(args)
    elif action == "listen":
        listen(args[0], int(args[1]), float(args[2]))
    else:
        sys.exit(f"unknown action {action}")


if __name__ == "__main__":
    main()
