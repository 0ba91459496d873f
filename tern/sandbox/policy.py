"""Static analysis of analysis code: what it attempts, how risky that is, and whether a human must approve.

``analyze(code)`` checks the syntax, then walks the AST with the import aliases resolved, so
``from epics import caput as _w; _w(...)``, ``import epics as e; e.caput(...)``, ``w = e.caput``,
``getattr(epics, "caput")`` and ``__import__("epics")`` are all recognised as the control-system write they
are. Findings fall in categories (control-system access and writes, network, process, file writes,
host file reads, dynamic code, privilege); each has a severity, and the report's risk is the highest.

The policy explains and decides approval; it does not enforce anything. The sandbox isolates every
execution regardless (no network, no host files, no privileges), so a finding the policy misses still
cannot reach the machine.

The deny-list tables are in ``tern.sandbox.policy_rules``; the report types (``PolicyReport``, ``Finding``,
``RiskLevel``) live in ``tern.models.code_policy`` and are re-exported here.
"""

from __future__ import annotations

import ast

from tern.models.approval import ApprovalMode
from tern.models.code_policy import RISK_ORDER, Category, Finding, PolicyReport, RiskLevel
from tern.sandbox.policy_rules import (
    CONTROL_MODULES,
    CONTROL_WRITE_NAMES,
    DYNAMIC_ATTRS,
    DYNAMIC_BUILTINS,
    DYNAMIC_MODULES,
    FILE_WRITE_MODULES,
    NAMED,
    NETWORK_MODULES,
    PATH_WRITE_METHODS,
    PROCESS_MODULES,
    SAFE_READ_PREFIXES,
    SEVERITY,
    WRITE_METHODS,
)


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


__all__ = ["ApprovalMode", "Category", "Finding", "PolicyReport", "RiskLevel", "analyze"]
