"""The layer rules of docs/architecture.md, checked on the source (an AST scan, no imports run):
bot -> dialogs -> storage; dialogs never import the edge; SQL only in storage; outbox rows are
created only by storage/outbox.py; the service never imports bench/ (nor the emulator, except
the demo command)."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("bot", "dialogs", "storage")

# dialogs/ modules that still run their own SQL, to be moved into storage/ functions; the list
# only ever shrinks (issue 10: the engine rework moves these).
SQL_IN_DIALOGS_PENDING: frozenset[str] = frozenset()
# The one production module allowed to start the emulator: `zikao-bot demo`.
EMULATOR_USERS = frozenset({"bot/cli.py"})
# Names from the schema modules that are plain helpers, not tables to query.
MODEL_HELPERS = frozenset({"utcnow", "Base", "UTCDateTime", "STATUS_LABELS", "ENTRY_KINDS", "APPLICATION_KINDS",
                           "PHOTO_CONTENT_TYPES", "DEFAULT_EVIDENCE_TYPES"})


@dataclass(frozen=True)
class Import:
    module: str  # "sqlalchemy", "storage.models" ...
    names: tuple[str, ...]
    line: int


def imports(tree: ast.AST) -> list[Import]:
    """Every import, at module level or inside functions (a late import is still a dependency)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(Import(node.module, tuple(a.name for a in node.names), node.lineno))
    return out


def top(module: str) -> str:
    return module.split(".")[0]


def outbox_inserts(tree: ast.AST) -> list[int]:
    """Lines that create outbox rows: Outbox(...), insert(Outbox...), t.insert() on the outbox table."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and "Outbox" in ast.unparse(node.value):
            aliases |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name == "Outbox":
            lines.append(node.lineno)
        elif name == "insert":
            target = " ".join(ast.unparse(a) for a in node.args)
            if isinstance(f, ast.Attribute):
                target += " " + ast.unparse(f.value)
            words = set(target.replace(".", " ").replace("(", " ").replace(")", " ").split())
            if "Outbox" in target or words & aliases:
                lines.append(node.lineno)
    return lines


def sources(*packages: str) -> list[tuple[str, ast.AST]]:
    out = []
    for pkg in packages:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            out.append((rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)))
    return out


def test_dialogs_never_import_the_edge_the_emulator_or_benchmarks():
    bad = [f"{rel}:{i.line} imports {i.module}" for rel, tree in sources("dialogs") for i in imports(tree)
           if top(i.module) in ("bot", "emulator", "bench", "aiohttp", "wechatpy")]
    assert bad == []


def test_storage_imports_neither_dialogs_nor_the_edge():
    bad = [f"{rel}:{i.line} imports {i.module}" for rel, tree in sources("storage") for i in imports(tree)
           if top(i.module) in ("bot", "dialogs", "emulator", "bench", "aiohttp", "wechatpy")]
    assert bad == []


def test_sql_lives_in_storage_not_in_dialogs():
    bad = []
    for rel, tree in sources("dialogs"):
        if rel in SQL_IN_DIALOGS_PENDING:
            continue
        for i in imports(tree):
            if top(i.module) == "sqlalchemy":
                bad.append(f"{rel}:{i.line} imports {i.module}")
            elif i.module in ("storage.models", "storage.models_applications", "storage.models_service"):
                tables = set(i.names) - MODEL_HELPERS
                if tables:
                    bad.append(f"{rel}:{i.line} imports tables {sorted(tables)}")
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            f = node.func
            on_engine = isinstance(f.value, ast.Attribute) and f.value.attr == "engine" and f.attr in ("connect", "begin")
            if f.attr in ("session", "execute", "scalars", "scalar") or on_engine:
                bad.append(f"{rel}:{node.lineno} calls {ast.unparse(f)}")
    assert bad == []


def test_outbox_rows_are_created_only_by_storage_outbox():
    bad = [f"{rel}:{line}" for rel, tree in sources(*PRODUCTION, "emulator") if rel != "storage/outbox.py"
           for line in outbox_inserts(tree)]
    assert bad == []


def test_the_service_does_not_import_benchmarks_nor_the_emulator_outside_the_demo():
    bad = []
    for rel, tree in sources(*PRODUCTION):
        for i in imports(tree):
            if top(i.module) == "bench" or (top(i.module) == "emulator" and rel not in EMULATOR_USERS):
                bad.append(f"{rel}:{i.line} imports {i.module}")
    assert bad == []


@pytest.mark.parametrize("code, found", [
    ("s.add(Outbox(openid='o'))", True),
    ("await s.execute(insert(Outbox).values(openid='o'))", True),
    ("await s.execute(db.insert(Outbox.__table__).values(openid='o'))", True),
    ("_T = Outbox.__table__\nawait s.execute(_T.insert().values(openid='o'))", True),
    ("_T = Outbox.__table__\nawait s.execute(_T.update().values(status='sent'))", False),
    ("await s.execute(insert(Notice).values(title='t'))", False),
])
def test_the_outbox_scan_recognises_row_creation(code: str, found: bool):
    assert bool(outbox_inserts(ast.parse(code))) is found
