"""Static analysis of analysis code: what it attempts, how risky that is, and whether a human must approve.

``analyze(code)`` checks the syntax, then walks the AST with the import aliases resolved, so
``from epics import caput as _w; _w(...)``, ``import epics as e; e.caput(...)``, ``w = e.caput``,
``getattr(epics, "caput")`` and ``__import__("epics")`` are all recognised as the control-system write they
are. Findings fall in categories (control-system access and writes, network, process, file writes,
host file reads, dynamic code, privilege); each has a severity, and the report's risk is the highest.

The policy explains and decides approval; it does not enforce anything. The sandbox isolates every
execution regardless (no network, no host files, no privileges), so a finding the policy misses still
cannot reach the machine.
"""

from __future__ import annotations

import ast
from typing import Literal

from pydantic import BaseModel, Field

RiskLevel = Literal["low", "medium", "high", "critical"]
ApprovalMode = Literal["disabled", "control_writes", "all_code"]
Category = Literal[
    "control_system",
    "control_write",
    "network",
    "process",
    "file_write",
    "file_read",
    "dynamic_code",
    "privilege",
]

RISK_ORDER: dict[RiskLevel, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
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

CONTROL_MODULES = frozenset(
    {
        "epics",
        "pyepics",
        "caproto",
        "p4p",
        "pvaccess",
        "pvapy",
        "tango",
        "PyTango",
        "pydoocs",
        "pytine",
        "k2eg",
        "tern",
    }
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
PROCESS_MODULES = frozenset({"subprocess", "multiprocessing", "pty", "pexpect", "sh", "plumbum"})
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
            "os.system",
            "os.popen",
            "os.fork",
            "os.forkpty",
            "os.kill",
            "os.killpg",
            "os.spawnl",
            "os.spawnle",
            "os.spawnlp",
            "os.spawnlpe",
            "os.spawnv",
            "os.spawnve",
            "os.spawnvp",
            "os.spawnvpe",
            "os.posix_spawn",
            "os.posix_spawnp",
            "os.execl",
            "os.execle",
            "os.execlp",
            "os.execlpe",
            "os.execv",
            "os.execve",
            "os.execvp",
            "os.execvpe",
            "os.startfile",
            "concurrent.futures.ProcessPoolExecutor",
            "asyncio.create_subprocess_exec",
            "asyncio.create_subprocess_shell",
        ],
        "process",
    ),
    **dict.fromkeys(
        [
            "os.setuid",
            "os.setgid",
            "os.seteuid",
            "os.setegid",
            "os.setreuid",
            "os.setregid",
            "os.setresuid",
            "os.setresgid",
            "os.setgroups",
            "os.initgroups",
            "os.chroot",
            "os.setns",
            "os.unshare",
            "resource.setrlimit",
            "resource.prlimit",
        ],
        "privilege",
    ),
    **dict.fromkeys(
        [
            "os.remove",
            "os.unlink",
            "os.rmdir",
            "os.removedirs",
            "os.rename",
            "os.renames",
            "os.replace",
            "os.mkdir",
            "os.makedirs",
            "os.chmod",
            "os.lchmod",
            "os.chown",
            "os.lchown",
            "os.link",
            "os.symlink",
            "os.truncate",
            "os.mkfifo",
            "os.mknod",
            "os.utime",
        ],
        "file_write",
    ),
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
SAFE_READ_PREFIXES = ("/inputs", "/work", "/tmp")


class Finding(BaseModel):
    """One attempted access the code makes."""

    category: Category
    line: int = Field(description="1-based line of the code.")
    detail: str = Field(description="What was found, e.g. 'call to epics.caput (imported as _w)'.")
    severity: RiskLevel


class PolicyReport(BaseModel):
    """What ``analyze`` found. ``syntax_error`` set means the code cannot run (send it back to generation)."""

    syntax_ok: bool
    syntax_error: str | None = Field(None, description="'line N: message' when the code does not parse.")
    findings: list[Finding] = Field(default_factory=list)
    risk: RiskLevel = "low"
    imports: list[str] = Field(default_factory=list, description="Modules imported, fully qualified.")

    def categories(self) -> set[Category]:
        """The categories present among the findings."""
        return {f.category for f in self.findings}

    @property
    def attempts_control_write(self) -> bool:
        """True when the code tries to write to the control system (caput, .put(), ...)."""
        return "control_write" in self.categories()

    def needs_approval(self, mode: ApprovalMode) -> bool:
        """Whether a human must approve before the code runs, under Osprey's Python approval modes.

        ``disabled``: never. ``all_code``: always (code that does not parse never runs, so it needs none).
        ``control_writes``: when the code attempts a control-system write, or uses dynamic code
        (exec, eval, getattr with a computed name, ...) that could hide one: fail closed.
        """
        if not self.syntax_ok or mode == "disabled":
            return False
        if mode == "all_code":
            return True
        return bool(self.categories() & {"control_write", "dynamic_code", "privilege"})

    def summary(self) -> str:
        """Human-readable account for an approval request: risk, then one line per finding."""
        if not self.syntax_ok:
            return f"syntax error: {self.syntax_error}"
        if not self.findings:
            return "risk low: no control-system, network, process, file-write or dynamic-code access found"
        lines = [f"risk {self.risk}: {len(self.findings)} finding(s)"]
        lines += [f"  line {f.line}: [{f.category}, {f.severity}] {f.detail}" for f in self.findings]
        return "\n".join(lines)


def _dotted(node: ast.AST) -> str | None:
    """'a.b.c' for Name/Attribute chains, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _Analyzer(ast.NodeVisitor):
    """Two passes over the tree: the first only learns aliases (so a use before the aliasing line is
    still resolved), the second records findings."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}  # local name -> fully qualified name
        self.findings: dict[tuple[str, int], Finding] = {}
        self.imports: list[str] = []
        self.recording = False

    def run(self, tree: ast.AST) -> None:
        self.visit(tree)
        self.recording, self.imports = True, []
        self.visit(tree)

    # helpers -----------------------------------------------------------------------------------------
    def add(self, category: Category, node: ast.AST, detail: str) -> None:
        if self.recording:
            line = getattr(node, "lineno", 0)
            self.findings.setdefault(
                (category, line),
                Finding(category=category, line=line, detail=detail, severity=SEVERITY[category]),
            )

    def resolve(self, node: ast.AST) -> str | None:
        """Fully qualified name of a Name/Attribute chain through the aliases; of ``getattr(x, "lit")``,
        ``__import__("m")`` and ``importlib.import_module("m")`` too. None when unknown."""
        if isinstance(node, ast.Call):
            callee = self.resolve(node.func)
            if callee in ("getattr", "builtins.getattr") and len(node.args) >= 2:
                base, attr = self.resolve(node.args[0]), _const_str(node.args[1])
                return f"{base}.{attr}" if base and attr else None
            if callee in ("__import__", "builtins.__import__", "importlib.import_module") and node.args:
                return _const_str(node.args[0])
            return None
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        return None

    def classify(self, full: str, node: ast.AST, how: str) -> None:
        """Record what using the fully qualified name ``full`` means."""
        parts = full.split(".")
        top = parts[0]
        if top in CONTROL_MODULES:
            self.add("control_system", node, f"control-system library: {how}")
            if parts[-1] in CONTROL_WRITE_NAMES and len(parts) > 1:
                self.add("control_write", node, f"control-system write: {how}")
        if top in NETWORK_MODULES:
            self.add("network", node, f"network access: {how}")
        if top in PROCESS_MODULES:
            self.add("process", node, f"process creation: {how}")
        if top in DYNAMIC_MODULES:
            self.add("dynamic_code", node, f"dynamic or native code: {how}")
        if top in FILE_WRITE_MODULES:
            self.add("file_write", node, f"file-system change: {how}")
        for i in range(len(parts), 0, -1):
            category = NAMED.get(".".join(parts[:i]))
            if category:
                self.add(category, node, f"{category.replace('_', ' ')}: {how}")
                break

    @staticmethod
    def _how(local: str, full: str) -> str:
        return full if local == full else f"{full} (as {local})"

    # imports and aliases -------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            local = alias.asname or alias.name.split(".")[0]
            self.aliases[local] = alias.name if alias.asname else local
            self.imports.append(alias.name)
            self.classify(alias.name, node, "import " + alias.name + (f" as {alias.asname}" if alias.asname else ""))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            full = module if alias.name == "*" else f"{module}.{alias.name}"
            self.imports.append(full)
            self.classify(
                full,
                node,
                f"from {module} import {alias.name}" + (f" as {alias.asname}" if alias.asname else ""),
            )
            if alias.name == "*":
                if module.split(".")[0] in CONTROL_MODULES:  # star import brings the write functions in
                    for name in CONTROL_WRITE_NAMES:
                        self.aliases.setdefault(name, f"{module}.{name}")
                continue
            self.aliases[alias.asname or alias.name] = full

    def visit_Assign(self, node: ast.Assign) -> None:
        self._alias(node.targets, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._alias([node.target], node.value)
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._alias([node.target], node.value)
        self.generic_visit(node)

    def _alias(self, targets: list[ast.expr], value: ast.AST) -> None:
        """``w = epics.caput``, ``e = __import__("epics")``, ``f = getattr(e, "caput")`` make aliases."""
        full = self.resolve(value)
        if not full or (not isinstance(value, ast.Call) and full.split(".")[0] not in self._tops()):
            return
        for target in targets:
            if isinstance(target, ast.Name):
                self.aliases[target.id] = full

    def _tops(self) -> set[str]:
        return {a.split(".")[0] for a in self.aliases.values()}

    # uses ------------------------------------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if node.id == "__builtins__":
            self.add("dynamic_code", node, "access to __builtins__")
        elif node.id in self.aliases and isinstance(node.ctx, ast.Load):
            full = self.aliases[node.id]
            if full != node.id or full in NAMED:
                self.classify(full, node, f"use of {self._how(node.id, full)}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in DYNAMIC_ATTRS:
            self.add("dynamic_code", node, f"access to interpreter internals .{node.attr}")
        full = self.resolve(node)
        if full and full.split(".")[0] in self._tops():
            self.classify(full, node, f"use of {full}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        full = self.resolve(func)
        builtin = full if isinstance(func, ast.Name) and full == func.id else None
        if full and full.startswith("builtins."):
            builtin = full.removeprefix("builtins.")
        first = _const_str(node.args[0]) if node.args else None
        if builtin in DYNAMIC_BUILTINS:
            self.add("dynamic_code", node, f"{builtin}()" + (f" of {first!r}" if first else ""))
        if builtin == "getattr" and len(node.args) >= 2 and _const_str(node.args[1]) is None:
            self.add("dynamic_code", node, "getattr() with a computed attribute name")
        target = self.resolve(node)  # getattr(x, "lit"), __import__("m"), import_module("m")
        if target:
            self.classify(target, node, f"{ast.unparse(node)[:120]} resolving to {target}")
        if builtin == "open" or full in ("io.open", "os.open", "codecs.open"):
            self._check_open(node, full or "open")
        if isinstance(func, ast.Attribute):
            receiver = ast.unparse(func.value)[:80]
            if func.attr in WRITE_METHODS:
                self.add("control_write", node, f"call to {receiver}.{func.attr}() (possible channel write)")
            elif func.attr in PATH_WRITE_METHODS:
                self.add("file_write", node, f"call to {receiver}.{func.attr}()")
            elif func.attr == "open" and _open_mode_writes(node, mode_index=0) is not False:
                self.add("file_write", node, f"{receiver}.open() in write mode")
        self.generic_visit(node)

    def _check_open(self, node: ast.Call, how: str) -> None:
        path = _const_str(node.args[0]) if node.args else None
        writes = True if how == "os.open" else _open_mode_writes(node, mode_index=1)
        where = f" of {path!r}" if path else ""
        if writes:
            self.add("file_write", node, f"{how}(){where} in write mode")
        elif writes is None:
            self.add("file_write", node, f"{how}(){where} with a computed mode (may write)")
        if path and path.startswith("/") and not path.startswith(SAFE_READ_PREFIXES):
            self.add("file_read", node, f"{how}(){where}: a host path outside /inputs and /work")


def _open_mode_writes(node: ast.Call, mode_index: int) -> bool | None:
    """True if the open mode writes, False if it only reads, None if it cannot be known."""
    mode_node: ast.AST | None = None
    if len(node.args) > mode_index:
        mode_node = node.args[mode_index]
    for kw in node.keywords:
        if kw.arg == "mode":
            mode_node = kw.value
    if mode_node is None:
        return False
    mode = _const_str(mode_node)
    if mode is None:
        return None
    return any(c in mode for c in "wax+")


def analyze(code: str) -> PolicyReport:
    """Check the syntax of ``code`` and report attempted accesses with a risk level.

    Never raises for bad code: a syntax error is reported as ``syntax_ok=False`` with ``syntax_error``.
    """
    try:
        tree = ast.parse(code, filename="analysis.py")
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        msg = getattr(exc, "msg", None) or str(exc)
        return PolicyReport(syntax_ok=False, syntax_error=f"line {line}: {msg}" if line else msg, risk="low")
    analyzer = _Analyzer()
    analyzer.run(tree)
    findings = sorted(analyzer.findings.values(), key=lambda f: (f.line, f.category, f.detail))
    risk: RiskLevel = "low"
    for f in findings:
        if RISK_ORDER[f.severity] > RISK_ORDER[risk]:
            risk = f.severity
    return PolicyReport(syntax_ok=True, findings=findings, risk=risk, imports=sorted(set(analyzer.imports)))
