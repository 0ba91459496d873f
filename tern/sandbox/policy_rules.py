"""The policy's deny-list tables: which modules, names and attributes mean which kind of access.

Data only, read by ``tern.sandbox.policy``. Names are matched after import aliases are resolved, on the
fully qualified name (``epics.caput``) or its top-level module (``epics``). Categories and risk levels are
those of ``tern.models.code_policy``. The control-system write names and Osprey's method-name rule extend
Osprey's write and read patterns (``caput``, ``.put(``, ``write_channel``, Tango calls: its Python executor's
static analysis).
"""

from __future__ import annotations

from tern.models.code_policy import Category, RiskLevel

SEVERITY: dict[Category, RiskLevel] = {
    "control_system": "medium",  # reading channels: cannot work without network, but shows intent
    "control_write": "critical",
    "network": "high",
    "process": "high",
    "dynamic_code": "high",
    "privilege": "critical",
    "file_write": "medium",
    "file_read": "medium",
}
"""Severity of each finding category; a report's risk is the highest severity among its findings."""

CONTROL_MODULES = frozenset(
    {"epics", "pyepics", "caproto", "p4p", "pvaccess", "pvapy", "tango", "PyTango", "pydoocs", "pytine", "k2eg", "tern"}
)
"""Control-system client libraries (EPICS Channel Access / PV Access, Tango, DOOCS, TINE) and Tern itself."""
CONTROL_WRITE_NAMES = frozenset(
    {
        "caput",
        "caput_many",
        "put",
        "put_many",
        "write",
        "write_attribute",
        "write_attributes",
        "write_attribute_asynch",
        "write_read_attribute",
        "write_channel",
        "write_pv",
        "command_inout",
    }
)
"""Names that write when they come from a control-system library (``epics.caput``, ``...write_attribute``)."""
WRITE_METHODS = frozenset({"put", "caput", "put_many", "caput_many", "write_attribute", "write_channel"})
"""Method names flagged on any object (``pv.put(3)``), as Osprey does: the object's type is unknown."""
NETWORK_MODULES = frozenset(
    {
        "socket",
        "ssl",
        "urllib",
        "urllib2",
        "urllib3",
        "http",
        "requests",
        "httpx",
        "aiohttp",
        "ftplib",
        "smtplib",
        "telnetlib",
        "xmlrpc",
        "socketserver",
        "poplib",
        "imaplib",
        "nntplib",
        "websocket",
        "websockets",
        "paramiko",
        "grpc",
        "zmq",
        "pycurl",
        "dns",
        "asyncssh",
        "fabric",
        "webbrowser",
    }
)
"""Modules that reach the network (standard library and common clients)."""
PROCESS_MODULES = frozenset({"subprocess", "multiprocessing", "pty", "pexpect", "sh", "plumbum"})
"""Modules that start processes."""
DYNAMIC_MODULES = frozenset(
    {
        "importlib",
        "ctypes",
        "cffi",
        "marshal",
        "pickle",
        "dill",
        "cloudpickle",
        "code",
        "codeop",
        "runpy",
        "imp",
        "builtins",
    }
)
"""Modules whose import alone means code the analysis cannot see (loaded, unpickled or native)."""
FILE_WRITE_MODULES = frozenset({"shutil"})
"""Modules whose use changes the file system."""

_OS_PROCESS = ["system", "popen", "fork", "forkpty", "kill", "killpg", "startfile", "posix_spawn", "posix_spawnp"]
_OS_PROCESS += [f"spawn{v}" for v in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")]
_OS_PROCESS += [f"exec{v}" for v in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")]
_OS_PRIVILEGE = ["setuid", "setgid", "seteuid", "setegid", "setreuid", "setregid", "setresuid", "setresgid"]
_OS_PRIVILEGE += ["setgroups", "initgroups", "chroot", "setns", "unshare"]
_OS_FILE_WRITE = ["remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "mkdir", "makedirs"]
_OS_FILE_WRITE += ["chmod", "lchmod", "chown", "lchown", "link", "symlink", "truncate", "mkfifo", "mknod", "utime"]
NAMED: dict[str, Category] = {
    **dict.fromkeys(
        [
            "asyncio.open_connection",
            "asyncio.start_server",
            "asyncio.open_unix_connection",
            "pandas.read_html",
            "os.getaddrinfo",
        ],
        "network",
    ),
    **dict.fromkeys(
        [
            *(f"os.{name}" for name in _OS_PROCESS),
            "concurrent.futures.ProcessPoolExecutor",
            "asyncio.create_subprocess_exec",
            "asyncio.create_subprocess_shell",
        ],
        "process",
    ),
    **dict.fromkeys([*(f"os.{name}" for name in _OS_PRIVILEGE), "resource.setrlimit", "resource.prlimit"], "privilege"),
    **dict.fromkeys([f"os.{name}" for name in _OS_FILE_WRITE], "file_write"),
    **dict.fromkeys(
        [
            "sys.modules",
            "sys._getframe",
            "sys.settrace",
            "sys.setprofile",
            "sys.addaudithook",
            "gc.get_objects",
            "gc.get_referrers",
            "gc.get_referents",
            "types.FunctionType",
            "types.CodeType",
            "inspect.currentframe",
            "inspect.stack",
            "os.environ",
        ],
        "dynamic_code",
    ),
}
"""Fully qualified names (functions, classes, attributes) and what using them means."""
PATH_WRITE_METHODS = frozenset(
    {
        "write_text",
        "write_bytes",
        "unlink",
        "rmdir",
        "touch",
        "symlink_to",
        "hardlink_to",
        "lchmod",
        "rename",
        "replace",
        "mkdir",
    }
)
"""pathlib.Path methods that change the file system (flagged on any object)."""
DYNAMIC_BUILTINS = frozenset(
    {"exec", "eval", "compile", "__import__", "globals", "vars", "breakpoint", "setattr", "delattr"}
)
"""Builtins that run code the analysis cannot see, or reach objects by computed names."""
DYNAMIC_ATTRS = frozenset(
    {
        "__dict__",
        "__globals__",
        "__builtins__",
        "__subclasses__",
        "__code__",
        "__getattribute__",
        "__loader__",
        "__spec__",
        "__bases__",
        "__mro__",
        "__class__",
    }
)
"""Attributes that reach interpreter internals (a way around any name-based rule)."""
SAFE_READ_PREFIXES = ("/inputs", "/work", "/tmp")
"""Absolute paths the code may open for reading without a ``file_read`` finding (its inputs and work dirs)."""
