"""FAQ (咨询问答): edit one entry of the knowledge base, validate it, publish it (what `zikao-bot faq reload` does).

The file stays the source of truth under version control: an edit replaces only that entry's lines
(comments and the other entries stay as they are), the whole file is validated by the same code
that loads it in the service (dialogs.faq), and only a valid file is written, atomically. Running
services notice the new modification time and reload within seconds.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import yaml
from aiohttp import web
from aiohttp_session import get_session

from console.core import client_ip, config, db, flash, me, redirect, render, require_admin
from dialogs.faq import ACTIONS, FaqError, FaqFiles, FaqIndex
from dialogs.faq.index import parse_entries
from dialogs.faq.understand import GENERAL
from storage import staff


# --- Plain text work on the file --------------------------------------------------------------------


def _scalar(value: str) -> str:
    """A YAML scalar on one line, quoted only when YAML needs it."""
    return yaml.safe_dump({"k": value}, allow_unicode=True, width=10**6).strip()[3:]


def entry_yaml(entry: dict[str, Any], indent: int = 0) -> list[str]:
    """The lines of one entry in the knowledge base's own layout."""
    pad = " " * indent
    lines = [f"{pad}- id: {_scalar(entry['id'])}"]
    if entry.get("topic"):
        lines.append(f"{pad}  topic: {_scalar(entry['topic'])}")
    # What the matcher needs besides the text (dialogs/faq: business, also, aspect, refer) is kept as it was.
    if entry.get("business") and entry["business"] != GENERAL:
        lines.append(f"{pad}  business: {_scalar(entry['business'])}")
    if entry.get("also"):
        lines.append(f"{pad}  also: [{', '.join(_scalar(b) for b in entry['also'])}]")
    if entry.get("aspect"):
        lines.append(f"{pad}  aspect: {_scalar(entry['aspect'])}")
    if entry.get("refer"):
        lines.append(f"{pad}  refer: true")
    lines.append(f"{pad}  questions:")
    lines += [f"{pad}    - {_scalar(q)}" for q in entry["questions"]]
    answer = entry["answer"]
    if "\n" in answer and all(line == line.rstrip() and not line.startswith(" ") for line in answer.split("\n")):
        lines.append(f"{pad}  answer: |-")
        lines += [f"{pad}    {line}" if line else "" for line in answer.split("\n")]
    else:
        lines.append(f"{pad}  answer: {_scalar(answer)}")
    if entry.get("action"):
        lines.append(f"{pad}  action: {_scalar(entry['action'])}")
    lines.append(f"{pad}  source: {_scalar(entry['source'])}")
    return lines


def replace_entry(text: str, entry_id: str, new: dict[str, Any]) -> str:
    """`text` with the entry `entry_id` replaced by `new` (comments after the entry are kept)."""
    lines = text.split("\n")
    starts = [n for n, line in enumerate(lines) if line.lstrip().startswith("- id:")]
    for pos, start in enumerate(starts):
        value = lines[start].split("- id:", 1)[1].strip()
        if yaml.safe_load(value or "''") != entry_id:
            continue
        end = starts[pos + 1] if pos + 1 < len(starts) else len(lines)
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1
        indent = len(lines[start]) - len(lines[start].lstrip())
        return "\n".join(lines[:start] + entry_yaml(new, indent) + lines[end:])
    raise KeyError(entry_id)


def file_version(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _validate(text: str, kb: Path, cache_dir: str) -> list[str]:
    """Every problem of the knowledge base `text` would be (empty: valid), checked as the service loads it."""
    with tempfile.TemporaryDirectory(prefix="zikao-faq-") as tmp:
        candidate = Path(tmp) / kb.name
        candidate.write_text(text, encoding="utf-8")
        try:
            FaqIndex.load(FaqFiles.with_kb(candidate), cache_dir=cache_dir)
        except FaqError as e:
            return [line.replace(str(candidate), kb.name) for line in e.errors]
    return []


def _write(kb: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".kb-", dir=kb.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, kb)


# --- Pages ---------------------------------------------------------------------------------------------


def _as_dict(e) -> dict[str, Any]:
    # The answer as written ({placeholders} unfilled), so that an edit keeps the rules quoted from code.
    return {"id": e.id, "topic": e.topic, "business": e.business, "also": list(e.also), "aspect": e.aspect or "",
            "refer": e.refer, "questions": list(e.questions), "answer": e.template or e.answer,
            "action": e.action or "", "source": e.source}


@require_admin
async def faq_list(request: web.Request) -> web.Response:
    kb = config(request).faq_kb_file
    entries = await asyncio.to_thread(parse_entries, kb)
    q = request.query.get("q", "").strip()
    if q:
        entries = [e for e in entries if q in e.id or q in e.topic or q in e.answer or any(q in x for x in e.questions)]
    return await render(request, "faq.html", {"entries": entries, "q": q, "kb": kb.name})


async def _entry(request: web.Request, entry_id: str) -> tuple[Optional[Any], str]:
    kb = config(request).faq_kb_file
    text = await asyncio.to_thread(kb.read_text, encoding="utf-8")
    entries = await asyncio.to_thread(parse_entries, kb)
    return next((e for e in entries if e.id == entry_id), None), text


@require_admin
async def faq_edit(request: web.Request) -> web.Response:
    entry, text = await _entry(request, request.match_info["id"])
    if entry is None:
        raise web.HTTPNotFound(text="没有这个问答")
    return await render(request, "faq_edit.html", {"v": _as_dict(entry), "version": file_version(text),
                                                   "actions": sorted(ACTIONS), "errors": [], "checked": False})


@require_admin
async def faq_save(request: web.Request) -> web.Response:
    entry_id = request.match_info["id"]
    entry, text = await _entry(request, entry_id)
    if entry is None:
        raise web.HTTPNotFound(text="没有这个问答")
    form = await request.post()
    new = {"id": entry_id, "topic": str(form.get("topic", "")).strip(),
           # not on the form: kept from the entry as it is in the file
           "business": entry.business, "also": list(entry.also), "aspect": entry.aspect or "", "refer": entry.refer,
           "questions": [q.strip() for q in str(form.get("questions", "")).splitlines() if q.strip()],
           "answer": str(form.get("answer", "")).replace("\r\n", "\n").strip(),
           "action": str(form.get("action", "")).strip(), "source": str(form.get("source", "")).strip()}
    ctx = {"v": new, "version": form.get("version", ""), "actions": sorted(ACTIONS), "errors": [], "checked": False}
    if form.get("version") != file_version(text):
        ctx["errors"] = ["问答库在你打开后被修改过（可能是其他同事），请重新打开这条问答再修改。"]
        return await render(request, "faq_edit.html", ctx, status=409)
    cfg = config(request)
    new_text = replace_entry(text, entry_id, new)
    errors = await asyncio.to_thread(_validate, new_text, cfg.faq_kb_file, cfg.faq_cache_dir)
    if not errors:
        # The file must read back as exactly what was typed (quoting, line breaks).
        back = next((e for e in await asyncio.to_thread(_reparse, new_text, cfg.faq_kb_file) if e["id"] == entry_id), None)
        if back != {**new, "action": new["action"] or ""}:
            errors = ["保存后的内容与输入不一致，请检查特殊字符。"]
    ctx["errors"], ctx["checked"] = errors, True
    if errors or form.get("do") != "publish":
        return await render(request, "faq_edit.html", ctx, status=400 if errors else 200)
    await asyncio.to_thread(_write, cfg.faq_kb_file, new_text)
    await staff.audit(db(request), staff=me(request), action="faq_edit", target=f"faq:{entry_id}",
                      summary=f"修改并发布问答 {entry_id}", before=_as_dict(entry), after=new, ip=client_ip(request))
    flash(await get_session(request), f"问答 {entry_id} 已发布，服务会在几秒内自动加载。")
    return redirect("/console/faq")


def _reparse(text: str, kb: Path) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="zikao-faq-") as tmp:
        p = Path(tmp) / kb.name
        p.write_text(text, encoding="utf-8")
        return [_as_dict(e) for e in parse_entries(p)]


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/faq", faq_list, name="faq")
    router.add_get("/faq/{id}", faq_edit, name="faq_edit")
    router.add_post("/faq/{id}", faq_save, name="faq_save")
