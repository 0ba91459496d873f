"""The seccomp profile of sandbox containers: an allow-list narrower than Docker's default.

Format: Docker's seccomp profile JSON, the format of moby's ``profiles/seccomp/default.json``
(github.com/moby/profiles), which dockerd accepts inline as ``--security-opt seccomp=<json>`` (the
``SecurityOpt`` of the container's HostConfig). Semantics as in that default: ``defaultAction``
``SCMP_ACT_ERRNO`` with ``defaultErrnoRet`` 1, so any syscall not allowed fails with EPERM; ``archMap``
lets the filter match the 32-bit sub-architectures too; a syscall name the host's libseccomp does not
know is skipped by runc. Argument filters (``SCMP_CMP_MASKED_EQ``: ``(arg & value) == valueTwo``) follow
libseccomp's ``seccomp_rule_add(3)``.

Derived from moby's default (2025, github.com/moby/profiles ``seccomp/default.json``): its unconditional
allow-list, its ``clone`` flag filter and ``clone3``-as-ENOSYS rule for containers without
CAP_SYS_ADMIN, its ``socket`` family filter, and its per-architecture entries for x86-64 and arm64,
MINUS what lets code inspect or steer other processes, reach kernel subsystems that analysis code never
uses, or change the machine's state (``DENIED``). The important difference: Docker's default allows
``ptrace``, ``process_vm_readv`` and ``process_vm_writev`` on kernels >= 4.8, which let code stop the
container's own deadline process; here they fail with EPERM.

Analysis code runs CPython 3.11 with numpy, scipy, pandas and matplotlib (Debian bookworm); the sandbox
tests run those under this profile. The root helpers before it (docker-init, ``timeout``, ``setpriv``)
need ``capset``, ``prctl``, ``setgroups``, ``setresuid``/``setresgid``, all allowed.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

ALLOWED: tuple[str, ...] = (
    # files and directories
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range", "creat",
    "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fchdir",
    "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync",
    "flock", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
    "futimesat", "getcwd", "getdents", "getdents64", "lchown", "lchown32", "link", "linkat", "_llseek",
    "lseek", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat", "newfstatat", "open", "openat",
    "openat2", "pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
    "readlink", "readlinkat", "readv", "rename", "renameat", "renameat2", "rmdir", "sendfile",
    "sendfile64", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat",
    "sync_file_range", "syncfs", "tee", "truncate", "truncate64", "umask", "unlink", "unlinkat", "utime",
    "utimensat", "utimensat_time64", "utimes", "write", "writev",
    # extended attributes (tmpfs user.* attributes)
    "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "getxattrat", "lgetxattr",
    "listxattr", "listxattrat", "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "removexattrat",
    "setxattr", "setxattrat",
    # file-change notification and event loops
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "_newselect", "pause", "poll", "ppoll", "ppoll_time64", "pselect6",
    "pselect6_time64", "select", "signalfd", "signalfd4", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
    # memory
    "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "mincore", "mlock", "mlock2",
    "mlockall", "mmap", "mmap2", "mprotect", "mremap", "mseal", "msync", "munlock", "munlockall", "munmap",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
    # processes and threads (clone: see CLONE_RULE)
    "execve", "execveat", "exit", "exit_group", "fork", "futex", "futex_requeue", "futex_time64",
    "futex_wait", "futex_waitv", "futex_wake", "get_robust_list", "get_thread_area", "getcpu", "getpgid",
    "getpgrp", "getpid", "getppid", "getpriority", "getrlimit", "getrusage", "getsid", "gettid",
    "ioprio_get", "ioprio_set", "prctl", "prlimit64", "restart_syscall", "rseq", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "set_robust_list", "set_thread_area",
    "set_tid_address", "setpgid", "setpriority", "setrlimit", "setsid", "ugetrlimit", "uretprobe", "vfork",
    "wait4", "waitid", "waitpid",
    # signals (the kernel's uid check keeps them inside the code's own processes)
    "kill", "pidfd_open", "pidfd_send_signal", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sigaltstack", "sigprocmask", "sigreturn", "tgkill", "tkill",
    # identity and capabilities (setpriv drops to the sandbox user with these; the code cannot regain any)
    "capget", "capset", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getresgid", "getresgid32", "getresuid", "getresuid32", "getuid", "getuid32",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32",
    "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
    "setreuid32", "setuid", "setuid32",
    # self-restriction only
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "seccomp",
    # time and system information (reading only)
    "alarm", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "getitimer", "getrandom", "gettimeofday", "nanosleep", "setitimer", "sysinfo",
    "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64",
    "timer_settime", "timer_settime64", "times", "uname", "riscv_hwprobe",
    # sockets (socket itself: see SOCKET_RULES); the container has no network, only its own loopback
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen", "recv",
    "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg", "sendto",
    "setsockopt", "shutdown", "socketpair",
    # pipes, terminals, IPC inside the container's own IPC namespace (multiprocessing, shared memory)
    "ioctl", "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd", "pipe",
    "pipe2", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt",
    "shmget",
    # architecture-specific (x86-64, arm64 and its 32-bit arm)
    "arch_prctl", "arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls",
    "sync_file_range2",
)  # fmt: skip
"""Syscalls allowed unconditionally."""

DENIED: tuple[str, ...] = (
    # inspecting or steering other processes (the container's deadline process among them)
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
    "process_mrelease",
    # execution domain, kernel keyrings, namespaces and mounts
    "personality", "keyctl", "add_key", "request_key", "unshare", "setns", "clone3", "mount", "umount",
    "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "listmount", "statmount", "name_to_handle_at", "open_by_handle_at",
    # kernel attack surface analysis code never needs
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "io_setup", "io_submit", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_cancel",
    "io_destroy", "fanotify_init", "fanotify_mark", "lookup_dcookie", "modify_ldt", "vm86", "vm86old",
    "memfd_secret", "vmsplice", "cachestat", "mbind", "set_mempolicy", "set_mempolicy_home_node",
    "get_mempolicy", "migrate_pages", "move_pages", "lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules",
    # the machine's state: modules, kexec, clocks, reboot, swap, accounting, quotas, host-wide sync
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon",
    "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "sync", "settimeofday", "stime",
    "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime", "clock_adjtime64", "sethostname",
    "setdomainname", "iopl", "ioperm", "vhangup", "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl",
    "create_module", "get_kernel_syms", "query_module",
    # the 32-bit multiplexed socket call would bypass the socket family filter (int 0x80 on x86-64)
    "socketcall",
)  # fmt: skip
"""Syscalls that fail with EPERM (ENOSYS for ``clone3``), listed for the reader and the tests: the profile
is an allow-list, so anything not in ``ALLOWED`` is denied whether or not it is named here."""

CLONE_NAMESPACE_FLAGS = 0x7E020000
"""CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
(linux/sched.h); ``clone`` is allowed only with none of them, as in Docker's default without CAP_SYS_ADMIN."""

ENOSYS = 38
"""``clone3`` fails with ENOSYS so that glibc falls back to ``clone``, whose flags a filter can see (clone3
passes them in a struct seccomp cannot read)."""

AF_ALG, AF_VSOCK = 38, 40
"""Socket families Docker's default refuses (kernel crypto API, host-guest sockets; linux/socket.h)."""

ARCH_MAP: list[dict[str, Any]] = [
    {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
]


def profile() -> dict[str, Any]:
    """The profile as a dict in Docker's seccomp JSON format (see the module docstring for its source)."""
    allow = "SCMP_ACT_ALLOW"
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": ARCH_MAP,
        "syscalls": [
            {"names": sorted(ALLOWED), "action": allow},
            {
                "names": ["clone"],
                "action": allow,
                "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            },
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            {"names": ["socket"], "action": allow, "args": [{"index": 0, "value": AF_ALG, "op": "SCMP_CMP_LT"}]},
            {"names": ["socket"], "action": allow, "args": [{"index": 0, "value": AF_ALG + 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": allow, "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_GT"}]},
        ],
    }


@cache
def profile_json() -> str:
    """The profile as compact JSON, the form ``security_opt=["seccomp=<json>"]`` passes to dockerd."""
    return json.dumps(profile(), separators=(",", ":"))
