"""Import: upload the CSV files (or a zip of them), read the dry-run report with line-level errors, then commit.

Behind it is the same all-or-nothing importer as `zikao-bot import DIR` (storage.importer): the
upload is kept in a private directory between the check and the commit.
"""
from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from aiohttp import web
from aiohttp_session import get_session

from console.core import MULTIPART, client_ip, db, flash, me, redirect, render, require_admin
from storage import staff
from storage.importer import FILE_ORDER, ImportReport, import_directory

MAX_UPLOAD = 200 * 1024 * 1024  # all files of one upload, unpacked
UPLOAD_ROOT = Path(tempfile.gettempdir()) / "zikao-console-imports"


class UploadRefused(ValueError):
    pass


def _keep(directory: Path, name: str, data: bytes, budget: list[int]) -> str | None:
    """Store one uploaded file under its base name (never a path from the upload)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    if not base or base.startswith("."):
        return None
    budget[0] -= len(data)
    if budget[0] < 0:
        raise UploadRefused("上传的文件太大（合计最多200MB）。")
    (directory / base).write_bytes(data)
    return base


def _unzip(directory: Path, data: bytes, budget: list[int]) -> list[str]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadRefused("压缩包已损坏或不是zip格式。") from None
    kept = []
    for info in archive.infolist():
        if info.is_dir() or not info.filename.lower().endswith(".csv"):
            continue
        # Sizes claimed by the archive are checked before anything is unpacked (zip bombs).
        if info.file_size > budget[0]:
            raise UploadRefused("压缩包里的文件太大（合计最多200MB）。")
        name = _keep(directory, info.filename, archive.read(info), budget)
        if name:
            kept.append(name)
    return kept


async def _receive(request: web.Request, directory: Path) -> list[str]:
    reader = request[MULTIPART]
    budget = [MAX_UPLOAD]
    kept: list[str] = []
    while (part := await reader.next()) is not None:
        if part.name != "files" or not part.filename:
            continue
        data = bytearray()
        while chunk := await part.read_chunk(1 << 16):
            data += chunk
            if len(data) > MAX_UPLOAD:
                raise UploadRefused("上传的文件太大（合计最多200MB）。")
        if part.filename.lower().endswith(".zip"):
            kept += _unzip(directory, bytes(data), budget)
        else:
            name = _keep(directory, part.filename, bytes(data), budget)
            if name:
                kept.append(name)
    return kept


def _report_context(report: ImportReport) -> dict:
    return {"report": report, "text": report.format(), "errors": report.errors[:500],
            "more": max(0, len(report.errors) - 500)}


@require_admin
async def import_page(request: web.Request) -> web.Response:
    return await render(request, "import.html", {"files": FILE_ORDER, "stage": "upload", "report": None})


@require_admin
async def import_check(request: web.Request) -> web.Response:
    UPLOAD_ROOT.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="upload-", dir=UPLOAD_ROOT))
    session = await get_session(request)
    try:
        names = await _receive(request, directory)
    except UploadRefused as e:
        shutil.rmtree(directory, ignore_errors=True)
        flash(session, str(e), "error")
        return redirect("/console/import")
    if not names:
        shutil.rmtree(directory, ignore_errors=True)
        flash(session, "请选择要导入的CSV文件或zip压缩包。", "error")
        return redirect("/console/import")
    report = await import_directory(db(request), directory, dry_run=True)
    report.source = "、".join(names)
    await staff.audit(db(request), staff=me(request), action="import_dry_run", target="import",
                      summary=f"{report.source}：{'校验通过' if report.ok else f'{len(report.errors)} 处错误'}",
                      ip=client_ip(request))
    previous = session.pop("import_dir", None)
    if previous:
        shutil.rmtree(UPLOAD_ROOT / previous, ignore_errors=True)
    if report.ok:
        session["import_dir"] = directory.name
        session["import_names"] = names
    else:
        shutil.rmtree(directory, ignore_errors=True)
    return await render(request, "import.html", {"files": FILE_ORDER, "stage": "checked", **_report_context(report)})


@require_admin
async def import_commit(request: web.Request) -> web.Response:
    session = await get_session(request)
    name = session.pop("import_dir", None)
    names = session.pop("import_names", [])
    directory = UPLOAD_ROOT / name if name and "/" not in name and name.startswith("upload-") else None
    if directory is None or not directory.is_dir():
        flash(session, "没有待导入的文件（可能已导入，或服务已重启），请重新上传。", "error")
        return redirect("/console/import")
    try:
        report = await import_directory(db(request), directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    report.source = "、".join(names)
    counts = {r.file: {"rows": r.rows, "inserted": r.inserted, "updated": r.updated} for r in report.files}
    await staff.audit(db(request), staff=me(request), action="import", target="import",
                      summary=f"{report.source}：{'已导入' if report.ok else f'失败，{len(report.errors)} 处错误'}",
                      after=counts, ip=client_ip(request))
    return await render(request, "import.html", {"files": FILE_ORDER, "stage": "done", **_report_context(report)})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/import", import_page, name="import_page")
    router.add_post("/import", import_check, name="import_check")
    router.add_post("/import/commit", import_commit, name="import_commit")
