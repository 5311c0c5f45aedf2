"""Attempts the seccomp layer must refuse, one per subcommand. Exit 0 when the
attempt worked, 1 (with the reason on stderr) when it did not."""
import ctypes
import os
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long  # integer arguments are passed full width, not as C int
NR = {  # x86_64 numbers: the tests run there
    "ptrace": 101, "shmget": 29, "shmat": 30, "keyctl": 250,
    "process_vm_writev": 311, "io_uring_setup": 425, "pidfd_getfd": 438,
    "process_vm_readv": 310, "kcmp": 312, "userfaultfd": 323, "perf_event_open": 298,
    "bpf": 321, "semget": 64, "semctl": 66, "msgget": 68, "msgrcv": 70,
}


def fail(what):
    err = ctypes.get_errno()
    sys.stderr.write(f"{what}: {os.strerror(err) if err else 'failed'}\n")
    sys.exit(1)


def in_child(fn):
    """Run fn in a child of this process (a tool of the "agent" we are), and
    exit with its status."""
    pid = os.fork()
    if pid == 0:
        try:
            fn(os.getppid())
        except OSError as e:
            sys.stderr.write(f"{e}\n")
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def mptcp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_MPTCP)
    s.connect(("127.0.0.1", int(port)))
    s.sendall(b"through mptcp\n")


def udp():
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 9))


def raw():
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)


def netlink(proto):
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, int(proto))


def unix():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)


def tcp(port):
    socket.create_connection(("127.0.0.1", int(port))).sendall(b"tcp\n")


def mptcp_plain(port):
    mptcp(port)


def udp_to(host, port):
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (host, int(port)))


def udp_echo(port):
    """A datagram to a UDP echo server on 127.0.0.1, and its echo back."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(b"ping", ("127.0.0.1", int(port)))
    if s.recvfrom(64)[0] != b"ping":
        fail("no echo")


def _dns_query():
    # A query for `.` NS: any resolver answers it without leaving the host.
    return b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01"


def dns_udp(server):
    """A DNS query over UDP to `server`, and an answer with our id."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(_dns_query(), (server, 53))
    if s.recvfrom(4096)[0][:2] != b"\x12\x34":
        fail("no DNS answer")


def dns_tcp(server):
    """The same query over TCP (RES_OPTIONS=use-vc)."""
    q = _dns_query()
    s = socket.create_connection((server, 53), timeout=5)
    s.sendall(len(q).to_bytes(2, "big") + q)
    if s.recv(4096)[2:4] != b"\x12\x34":
        fail("no DNS answer")


def raw_ping():
    """A raw ICMP socket, and an echo request to 127.0.0.1 through it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.sendto(b"\x08\x00\xf7\xff\x00\x00\x00\x00", ("127.0.0.1", 0))


def new_netns():
    """New user and network namespaces, as an agent might make its own."""
    libc_ = ctypes.CDLL(None, use_errno=True)
    if libc_.unshare(0x10000000 | 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER|CLONE_NEWNET)")


def unix_connect(path):
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(path)


def abstract_connect(name):
    """Connect to an abstract Unix socket (no path: Landlock's file rules do
    not see it; its scoping, ABI >= 6, does)."""
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect("\0" + name)


def only_loopback():
    with open("/proc/net/dev") as f:
        names = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    if names != ["lo"]:
        sys.stderr.write(f"interfaces: {names}\n")
        sys.exit(1)


def pidfd_getfd():
    def steal(agent):
        pidfd = os.pidfd_open(agent)
        fd = libc.syscall(L(NR["pidfd_getfd"]), L(pidfd), L(1), L(0))
        if fd < 0:
            fail("pidfd_getfd of the agent's stdout")
        os.write(fd, b'{"type":"result","injected":true}\n')
    sys.exit(in_child(steal))


class Iov(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def vm_writev():
    buf = ctypes.create_string_buffer(b"original")

    def write(agent):
        src = ctypes.create_string_buffer(b"written!")
        local = Iov(ctypes.addressof(src), 8)
        remote = Iov(ctypes.addressof(buf), 8)
        n = libc.syscall(L(NR["process_vm_writev"]), L(agent), ctypes.byref(local), L(1),
                         ctypes.byref(remote), L(1), L(0))
        if n != 8:
            fail("process_vm_writev into the agent")
    code = in_child(write)
    if code != 0 or buf.value != b"written!":
        sys.exit(1)


def vm_readv():
    secret = b"agent-secret"
    buf = ctypes.create_string_buffer(secret)

    def read(agent):
        # Our copy of the buffer is wiped: what comes back is the agent's.
        ctypes.memset(buf, 0, len(secret))
        dst = ctypes.create_string_buffer(len(secret))
        local = Iov(ctypes.addressof(dst), len(secret))
        remote = Iov(ctypes.addressof(buf), len(secret))
        n = libc.syscall(L(NR["process_vm_readv"]), L(agent), ctypes.byref(local), L(1),
                         ctypes.byref(remote), L(1), L(0))
        if n != len(secret):
            fail("process_vm_readv of the agent")
        if dst.raw != secret:
            sys.stderr.write(f"read {dst.raw!r}\n")
            os._exit(1)
    sys.exit(in_child(read))


def kcmp():
    def compare(agent):
        KCMP_FILE = 0
        # Is our stdout the agent's? (It is: inherited.) 0 means equal.
        r = libc.syscall(L(NR["kcmp"]), L(os.getpid()), L(agent), L(KCMP_FILE), L(1), L(1))
        if r != 0:
            fail("kcmp(KCMP_FILE) against the agent")
    sys.exit(in_child(compare))


def userfaultfd():
    O_CLOEXEC, UFFD_USER_MODE_ONLY = 0o2000000, 1
    if libc.syscall(L(NR["userfaultfd"]), L(O_CLOEXEC | UFFD_USER_MODE_ONLY)) < 0:
        fail("userfaultfd(UFFD_USER_MODE_ONLY)")


def perf_event_open():
    """A software counter on ourselves, user space only: what
    kernel.perf_event_paranoid <= 2 allows without privileges. Where the
    kernel refuses unprivileged perf altogether (paranoid > 2, EACCES), that
    answer counts as reaching the kernel's perf code, unlike the filter's
    EPERM."""
    attr = (ctypes.c_uint8 * 128)()
    PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK = 1, 1
    DISABLED, EXCLUDE_KERNEL, EXCLUDE_HV = 1 << 0, 1 << 5, 1 << 6
    ctypes.c_uint32.from_buffer(attr, 0).value = PERF_TYPE_SOFTWARE
    ctypes.c_uint32.from_buffer(attr, 4).value = 128
    ctypes.c_uint64.from_buffer(attr, 8).value = PERF_COUNT_SW_TASK_CLOCK
    ctypes.c_uint64.from_buffer(attr, 40).value = DISABLED | EXCLUDE_KERNEL | EXCLUDE_HV
    PERF_FLAG_FD_CLOEXEC = 8
    fd = libc.syscall(L(NR["perf_event_open"]), attr, L(0), L(-1), L(-1), L(PERF_FLAG_FD_CLOEXEC))
    if fd >= 0:
        return
    err = ctypes.get_errno()
    with open("/proc/sys/kernel/perf_event_paranoid") as f:
        paranoid = int(f.read())
    if err == 13 and paranoid > 2:
        sys.stderr.write(f"the kernel refused (EACCES, perf_event_paranoid={paranoid})\n")
        return
    fail("perf_event_open")


def bpf_bad_map():
    """bpf(BPF_MAP_LOOKUP_ELEM) on fd -1: the kernel's bpf code answers EBADF,
    the filter EPERM. (With kernel.unprivileged_bpf_disabled set, the kernel
    itself answers EPERM to loading a program, so that cannot tell them
    apart.)"""
    BPF_MAP_LOOKUP_ELEM = 1
    attr = (ctypes.c_uint8 * 32)()
    ctypes.c_int32.from_buffer(attr, 0).value = -1
    r = libc.syscall(L(NR["bpf"]), L(BPF_MAP_LOOKUP_ELEM), attr, L(32))
    err = ctypes.get_errno()
    if r < 0 and err == 9:
        return
    fail("bpf(BPF_MAP_LOOKUP_ELEM, fd -1) did not reach the kernel's bpf code (want EBADF)")


def sem(key, expected):
    GETVAL = 12
    semid = libc.syscall(L(NR["semget"]), L(int(key)), L(0), L(0))
    if semid < 0:
        fail("semget of the outside semaphore set")
    val = libc.syscall(L(NR["semctl"]), L(semid), L(0), L(GETVAL), L(0))
    if val < 0:
        fail("semctl(GETVAL)")
    sys.exit(0 if val == int(expected) else 1)


def msg(key, expected):
    IPC_NOWAIT = 0o4000
    qid = libc.syscall(L(NR["msgget"]), L(int(key)), L(0))
    if qid < 0:
        fail("msgget of the outside queue")
    buf = ctypes.create_string_buffer(8 + 256)
    n = libc.syscall(L(NR["msgrcv"]), L(qid), buf, L(256), L(0), L(IPC_NOWAIT))
    if n < 0:
        fail("msgrcv")
    sys.exit(0 if buf.raw[8:8 + n] == expected.encode() else 1)


def ptrace():
    def attach(agent):
        PTRACE_SEIZE = 0x4206
        if libc.syscall(L(NR["ptrace"]), L(PTRACE_SEIZE), L(agent), L(0), L(0)) != 0:
            fail("ptrace(PTRACE_SEIZE) of the agent")
    sys.exit(in_child(attach))


def keyring(desc, expected):
    KEYCTL_SEARCH, KEYCTL_READ, USER_KEYRING = 10, 11, -4
    key = libc.syscall(L(NR["keyctl"]), L(KEYCTL_SEARCH), L(USER_KEYRING), b"user", desc.encode(),
                       L(0))
    if key < 0:
        fail("keyctl(SEARCH) in the user keyring")
    buf = ctypes.create_string_buffer(256)
    n = libc.syscall(L(NR["keyctl"]), L(KEYCTL_READ), L(key), buf, L(256))
    if n < 0:
        fail("keyctl(READ)")
    sys.exit(0 if buf.raw[:n] == expected.encode() else 1)


def shm(key, expected):
    SHM_RDONLY = 0o10000
    shmid = libc.syscall(L(NR["shmget"]), L(int(key)), L(0), L(0))
    if shmid < 0:
        fail("shmget of the outside segment")
    libc.syscall.restype = ctypes.c_void_p
    addr = libc.syscall(L(NR["shmat"]), L(shmid), L(0), L(SHM_RDONLY))
    libc.syscall.restype = ctypes.c_long
    if addr is None or addr == ctypes.c_void_p(-1).value:
        fail("shmat")
    got = ctypes.string_at(addr, len(expected))
    sys.exit(0 if got == expected.encode() else 1)


def io_uring():
    params = ctypes.create_string_buffer(120)
    if libc.syscall(L(NR["io_uring_setup"]), L(4), params) < 0:
        fail("io_uring_setup")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    try:
        globals()[cmd](*args)
    except OSError as e:
        sys.stderr.write(f"{cmd}: {e}\n")
        sys.exit(1)
