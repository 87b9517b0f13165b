"""CSV import of the exam office's data: candidates, majors, plans, textbooks, sittings, scores, windows.

A directory of CSV files (see docs/import.md) is read, every row validated, references checked
against the same import and the database, and then everything is written in one transaction:
a directory with any error imports nothing. Rows are upserted by their natural keys, so
importing the same files again changes nothing. Lookups and writes are batched (a few
statements per thousand rows, never one per row).
"""
from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import csv
import datetime as dt
import io
import json
import logging
import os
import re
import time
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models as m
from storage import degree, keys, outbox, queries, thesis, transfers
from storage.db import Database
from storage.identifiers import (
    id_check_digit,
    mask_id_number,
    normalize_id_number,
    normalize_major_code,
    normalize_mobile,
    parse_sitting,
    sitting_label,
    valid_admission_number,
    valid_course_code,
    valid_id_number,
    valid_major_code,
    valid_mobile,
)
from storage.models_applications import Application
from storage.models_degree import DegreeRequirement
from storage.models_service import GRADUATION_FEE, ORDER_STATUSES, Order
from storage.models_transfers import TRANSFER_IN_STATUSES, TransferIn, TransferInCourse
from storage.passwords import hash_initial_password, hash_password
from storage.vocab import (
    COURSE_KINDS,
    GRADES,
    ID_TYPES,
    ID_TYPES_WITH_CHECK_DIGIT,
    MAJOR_LEVELS,
    PLAN_CATEGORIES,
    SCORE_KINDS,
    WINDOW_KINDS,
    score_passes,
)

log = logging.getLogger(__name__)

SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991
CHUNK = 500  # keys per IN (...) lookup: well below SQLite's and asyncpg's parameter limits
MAX_SHOWN_ISSUES = 200


# --- Report ---------------------------------------------------------------------------------------


@dataclass
class Issue:
    file: str
    line: int  # 0: the file (or the directory) as a whole
    message: str

    def __str__(self) -> str:
        where = self.file or "目录"
        return f"{where} 第 {self.line} 行: {self.message}" if self.line else f"{where}: {self.message}"


@dataclass
class FileResult:
    file: str
    encoding: str = ""
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class ImportReport:
    source: str
    files: list[FileResult] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    committed: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, file: str, line: int, message: str) -> None:
        self.errors.append(Issue(file, line, message))

    def warn(self, file: str, line: int, message: str) -> None:
        self.warnings.append(Issue(file, line, message))

    def result(self, file: str) -> FileResult:
        for r in self.files:
            if r.file == file:
                return r
        r = FileResult(file)
        self.files.append(r)
        return r

    def format(self, max_issues: int = MAX_SHOWN_ISSUES) -> str:
        """A plain-text report for the staff member who ran the import (Chinese)."""
        out = [f"导入目录: {self.source}"]
        if self.ok and self.committed:
            out.append(f"结果: 成功，已写入数据库（用时 {self.seconds:.1f} 秒）")
        elif self.ok:
            out.append("结果: 校验通过，未写入数据库")
        else:
            out.append(f"结果: 失败，发现 {len(self.errors)} 处错误，未导入任何数据。请改正后重新导入。")
        if self.files:
            out.append("")
            table = [("文件", "编码", "行数", "新增", "更新", "未变")] + [
                (r.file, r.encoding, str(r.rows), str(r.inserted), str(r.updated), str(r.unchanged))
                for r in self.files
            ]
            widths = [max(_width(row[i]) for row in table) for i in range(6)]
            for row in table:
                cells = [_pad(row[0], widths[0]), _pad(row[1], widths[1])]
                cells += [_pad(c, w, right=True) for c, w in zip(row[2:], widths[2:])]
                out.append("  ".join(cells).rstrip())
        for title, issues in (("错误", self.errors), ("警告", self.warnings)):
            if not issues:
                continue
            out.append("")
            out.append(f"{title} ({len(issues)}):")
            out.extend(f"  {i}" for i in issues[:max_issues])
            if len(issues) > max_issues:
                out.append(f"  …… 另有 {len(issues) - max_issues} 条未列出")
        return "\n".join(out)


def _width(s: str) -> int:
    """Columns a string takes in a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def _pad(s: str, width: int, right: bool = False) -> str:
    fill = " " * (width - _width(s))
    return fill + s if right else s + fill


# --- Reading CSV ----------------------------------------------------------------------------------


def decode_csv_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding label): UTF-8 with or without BOM, UTF-16 with BOM, else GBK (GB 18030)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8"), "UTF-8-BOM"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "UTF-16"
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    # GB 18030 is a superset of GBK and GB 2312, which is what Excel in China saves as "CSV".
    return data.decode("gb18030"), "GBK"


@dataclass
class RawTable:
    """One file's rows as text, keyed by canonical column names."""

    file: str
    encoding: str
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]

    @classmethod
    def from_records(cls, file: str, records: Iterable[dict[str, Any]], encoding: str = "内置") -> RawTable:
        rows = [(n, {k: "" if v is None else str(v) for k, v in r.items()}) for n, r in enumerate(records, 2)]
        columns = sorted({k for _, r in rows for k in r})
        return cls(file, encoding, columns, rows)


_HEADER_JUNK = re.compile(r"[\s\u3000\ufeff\u200b*＊]+")


def _header_key(h: str) -> str:
    return _HEADER_JUNK.sub("", h).lower()


def read_table(path: Path, spec: FileSpec, report: ImportReport) -> RawTable | None:
    file = spec.file
    try:
        text, encoding = decode_csv_bytes(path.read_bytes())
    except UnicodeDecodeError:
        report.error(file, 0, "无法识别文件编码，请另存为 UTF-8 或 GBK 编码的 CSV")
        return None
    except OSError as exc:
        report.error(file, 0, f"无法读取文件: {exc.strerror}")
        return None
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        report.error(file, 0, "文件为空")
        return None
    lookup = spec.header_lookup()
    columns: list[str | None] = []
    for raw in header:
        key = _header_key(raw)
        if not key:
            columns.append(None)
            continue
        name = lookup.get(key)
        if name is None:
            report.warn(file, 1, f"未知的列“{raw.strip()}”，已忽略")
        elif name in columns:
            report.error(file, 1, f"列“{raw.strip()}”重复")
        columns.append(name)
    missing = [c.label for c in spec.columns if c.required and c.name not in columns]
    if missing:
        report.error(file, 1, f"缺少必需的列: {'、'.join(missing)}（列名见 docs/import.md）")
        return None
    rows: list[tuple[int, dict[str, str]]] = []
    prev = reader.line_num
    try:
        for cells in reader:
            # A quoted cell may span lines: a record starts on the line after the previous one ended.
            start, prev = prev + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns):]):
                report.error(file, start, f"本行有 {len(cells)} 列，多于表头的 {len(columns)} 列（是否有未加引号的逗号？）")
                continue
            row = {}
            for name, cell in zip(columns, cells):
                if name is not None and name not in spec.informational:
                    row[name] = cell
            rows.append((start, row))
    except csv.Error as exc:
        report.error(file, prev + 1, f"CSV 格式错误: {exc}")
        return None
    return RawTable(file, encoding, [c for c in columns if c], rows)


# --- Cell parsers ---------------------------------------------------------------------------------


class Bad(ValueError):
    """A cell that cannot be used; the message says why, in Chinese, for the staff."""


_SPACES = re.compile(r"[\s\u3000\u00a0\u200b]+")
_DATE_RE = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:(?:\s+|T)(\d{1,2})\s*[:：]\s*(\d{2})(?:\s*[:：]\s*(\d{2}))?)?$"
)
_COMPACT_DATE_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def _code_text(s: str) -> str:
    # A leading apostrophe is how Excel users force text (keeps leading zeros).
    return _SPACES.sub("", s).lstrip("'")


def _scientific_hint(s: str) -> str:
    if re.match(r"^\d(\.\d+)?[eE]\+\d+$", s.strip()):
        return "（看起来被 Excel 转成了科学计数法，请把该列设为“文本”格式后重新导出）"
    return ""


def parse_date(s: str) -> dt.date:
    """2024-04-13, 2024/4/13, 2024.4.13, 2024年4月13日, 20240413."""
    t = s.strip()
    mt = _DATE_RE.match(t) or _COMPACT_DATE_RE.match(t)
    if not mt or (mt.re is _DATE_RE and mt.group(4)):
        raise Bad(f"日期“{s}”格式不对，应为 2024-04-13")
    try:
        return dt.date(int(mt.group(1)), int(mt.group(2)), int(mt.group(3)))
    except ValueError:
        raise Bad(f"日期“{s}”不存在") from None


def parse_month_or_date(s: str) -> dt.date:
    """A date, or a year and month (2017年12月, 201712, 2017-12) meaning the first of that month."""
    code = parse_sitting(s)
    if code is not None:
        return dt.date(int(code[:4]), int(code[4:]), 1)
    try:
        return parse_date(s)
    except Bad:
        raise Bad(f"时间“{s}”格式不对，应为 2024-04-13 或 2024年04月") from None


def parse_datetime(s: str) -> dt.datetime:
    """A moment; without a zone it is Shanghai time. '2025-04-01 09:00', '2025/4/1 9:00', ISO 8601."""
    t = s.strip()
    mt = _DATE_RE.match(t)
    if mt:
        try:
            return dt.datetime(
                int(mt.group(1)), int(mt.group(2)), int(mt.group(3)),
                int(mt.group(4) or 0), int(mt.group(5) or 0), int(mt.group(6) or 0), tzinfo=SHANGHAI,
            )
        except ValueError:
            raise Bad(f"时间“{s}”不存在") from None
    try:
        value = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise Bad(f"时间“{s}”格式不对，应为 2025-04-01 09:00") from None
    return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)


def parse_int(s: str, lo: int, hi: int, what: str) -> int:
    t = s.strip()
    if not re.fullmatch(r"\d+", t):
        raise Bad(f"{what}“{s}”应为整数")
    v = int(t)
    if not lo <= v <= hi:
        raise Bad(f"{what} {v} 超出范围 {lo}-{hi}")
    return v


_TRUE = {"是", "y", "yes", "true", "1", "t", "在读"}
_FALSE = {"否", "n", "no", "false", "0", "f", "不在读"}


def parse_bool(s: str) -> bool:
    t = s.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise Bad(f"“{s}”应为 是 或 否")


def parse_score(s: str) -> tuple[Decimal | None, str | None]:
    """A number 0-100 with at most one decimal, or 合格/通过/不合格/缺考."""
    t = _SPACES.sub("", s)
    if t in GRADES:
        return None, t
    try:
        v = Decimal(t)
    except InvalidOperation:
        raise Bad(f"成绩“{s}”应为 0-100 的分数或 合格/通过/不合格/缺考") from None
    if not v.is_finite() or v != v.quantize(Decimal("0.1")):
        raise Bad(f"成绩“{s}”最多保留一位小数")
    if not Decimal(0) <= v <= Decimal(100):
        raise Bad(f"成绩 {s} 超出 0-100")
    return v.quantize(Decimal("0.1")), None


def parse_amount(s: str) -> Decimal:
    """An amount of money in yuan: 0 or more, at most two decimals ('150', '150.00', '¥150')."""
    t = _SPACES.sub("", s).lstrip("¥￥").removesuffix("元").replace(",", "")
    try:
        v = Decimal(t)
    except InvalidOperation:
        raise Bad(f"金额“{s}”应为数字，如 150.00") from None
    if not v.is_finite() or v != v.quantize(Decimal("0.01")) or v < 0 or v >= Decimal("100000000"):
        raise Bad(f"金额“{s}”应为不小于 0 的数字，最多两位小数")
    return v.quantize(Decimal("0.01"))


def _choice(options: Iterable[str], what: str, aliases: dict[str, str] | None = None) -> Callable[[str], str]:
    opts = tuple(options)

    def parse(s: str) -> str:
        t = _SPACES.sub("", s)
        if aliases and t.lower() in aliases:
            return aliases[t.lower()]
        if t in opts:
            return t
        raise Bad(f"{what}“{s}”应为 {'/'.join(opts)} 之一")

    return parse


def _sitting(s: str) -> str:
    code = parse_sitting(s)
    if code is None:
        raise Bad(f"考次“{s}”格式不对，应为 202404 或 2024年04月")
    return code


def _course_code(s: str) -> str:
    t = _code_text(s)
    if not valid_course_code(t):
        raise Bad(f"课程代码“{s}”应为 5 位数字{'（前导 0 可能被 Excel 去掉了）' if t.isdigit() and len(t) < 5 else ''}")
    return t


def _major_code(s: str) -> str:
    t = normalize_major_code(_code_text(s))
    if not valid_major_code(t):
        raise Bad(f"专业代码“{s}”应为 6 位数字，可带 K 或 T 后缀（如 020301K）")
    return t


def _admission_number(s: str) -> str:
    t = _code_text(s)
    if not valid_admission_number(t):
        raise Bad(f"准考证号“{s}”应为 12 位数字{_scientific_hint(s)}")
    return t


def _mobile(s: str) -> str:
    if not valid_mobile(s):
        raise Bad(f"手机号“{s}”不是有效的大陆手机号（11 位，1 开头）")
    return normalize_mobile(s)


def _postcode(s: str) -> str:
    t = _code_text(s)
    if not re.fullmatch(r"\d{6}", t):
        raise Bad(f"邮政编码“{s}”应为 6 位数字")
    return t


def _email(s: str) -> str:
    t = s.strip()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", t):
        raise Bad(f"电子邮箱“{s}”格式不对")
    return t


def _password(s: str) -> str:
    # Never repeat the value in a message: reports are printed and may be shared.
    if s != s.strip() or not 6 <= len(s) <= 64:
        raise Bad("密码应为 6-64 个字符，首尾不能有空格")
    return s


def _json_object(s: str) -> dict[str, Any]:
    try:
        v = json.loads(s)
    except json.JSONDecodeError as exc:
        raise Bad(f"毕业要求不是有效的 JSON: {exc.msg}（第 {exc.pos + 1} 个字符）") from None
    if not isinstance(v, dict):
        raise Bad("毕业要求应为 JSON 对象，如 {\"thesis\": true}")
    return v


def _province(s: str) -> str:
    p = transfers.province_of(s)
    if p is None:
        raise Bad(f"来源省“{s}”不是省份名称（如 江苏、江苏省）")
    if p == transfers.SHANGHAI_PROVINCE:
        raise Bad("来源省不能是上海")
    return p


def _other_admission_number(s: str) -> str:
    try:
        return transfers.target_admission_number(s)
    except ValueError as exc:
        raise Bad(f"来源准考证号“{s}”：{exc}{_scientific_hint(s)}") from None


def _limited(s: str, what: str, limit: int) -> str:
    value = _SPACES.sub(" ", s).strip()
    if len(value) > limit:
        raise Bad(f"{what}过长（{len(value)} 字，最多 {limit} 字）")
    return value


def _accepted(s: str) -> bool | None:
    t = _SPACES.sub("", s).lower()
    if t in ("是", "认定", "已认定", "通过", "y", "yes", "true", "1"):
        return True
    if t in ("否", "不认定", "未认定", "不通过", "n", "no", "false", "0"):
        return False
    if t in ("待定", "待审核", "未审核"):
        return None
    raise Bad(f"是否认定“{s}”应为 是/否/待定")


def _material_code(s: str) -> str:
    t = _code_text(s)
    if not re.fullmatch(r"[A-Za-z0-9_\-]{1,32}", t):
        raise Bad(f"材料代码“{s}”应为 1-32 位字母、数字、下划线或“-”（如 cet4）")
    return t


def _material_fields(s: str) -> tuple[str, ...]:
    """填写项: 成绩、获取时间、省份、编号 (any of them, in any order; 无 for none)."""
    parts = [p for p in re.split(r"[;；、,，/|\s]+", s.strip()) if p]
    if parts == ["无"]:
        return ()
    out = []
    for p in parts:
        key = degree.FIELD_ALIASES.get(p.lower())
        if key is None:
            raise Bad(f"填写项“{p}”不认识，应为 {'、'.join(degree.FIELD_NAMES.values())} 中的一项或几项（或“无”）")
        if key not in out:
            out.append(key)
    return tuple(out)


def _min_score(s: str) -> Decimal:
    t = _SPACES.sub("", s).removesuffix("分")
    try:
        v = Decimal(t)
    except InvalidOperation:
        raise Bad(f"最低分“{s}”应为数字，如 425") from None
    if not v.is_finite() or v != v.quantize(Decimal("0.1")) or not Decimal(0) <= v <= degree.SCORE_MAX:
        raise Bad(f"最低分“{s}”应为 0-1000 的数字，最多一位小数")
    return v.quantize(Decimal("0.1"))


# --- File specifications --------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    name: str
    aliases: tuple[str, ...] = ()
    required: bool = False
    parse: Callable[[str], Any] | None = None
    # Text columns are checked against the model column of this name for length.
    model_column: str | None = None

    @property
    def label(self) -> str:
        return self.aliases[0] if self.aliases else self.name


@dataclass(frozen=True)
class FileSpec:
    file: str
    table: Table
    columns: tuple[Col, ...]
    # Columns people keep for readability (课程名称 next to 课程代码): accepted and ignored.
    informational: tuple[str, ...] = ()
    informational_aliases: tuple[str, ...] = ()

    def header_lookup(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for c in self.columns:
            for a in (c.name, *c.aliases):
                out[_header_key(a)] = c.name
        for name in self.informational:
            out[_header_key(name)] = name
        for alias, name in zip(self.informational_aliases, self.informational):
            out[_header_key(alias)] = name
        return out


_ID = Col("id_number", ("证件号码", "身份证号码", "身份证号"), required=True)

SPECS: tuple[FileSpec, ...] = (
    FileSpec("sittings.csv", m.Sitting.__table__, (
        Col("code", ("考次", "sitting", "考次代码"), True, _sitting),
        Col("name", ("考次名称", "名称")),
        Col("exam_date", ("考试日期",), parse=parse_date),
        Col("scores_released_at", ("成绩发布时间",), parse=parse_datetime),
    )),
    FileSpec("courses.csv", m.Course.__table__, (
        Col("code", ("课程代码", "course_code"), True, _course_code),
        Col("name", ("课程名称",), True),
        Col("kind", ("课程类型", "类型"), parse=_choice(COURSE_KINDS, "课程类型")),
    )),
    FileSpec("majors.csv", m.Major.__table__, (
        Col("code", ("专业代码", "major_code"), True, _major_code),
        Col("name", ("专业名称",), True),
        Col("level", ("层次", "专业层次"), True, _choice(MAJOR_LEVELS, "层次")),
        Col("required_credits", ("毕业学分", "最低毕业学分", "总学分"), True,
            lambda s: parse_int(s, 0, 300, "毕业学分")),
        Col("university", ("主考院校",)),
        Col("notes", ("专业说明",)),
        Col("graduation_rules", ("毕业要求",), parse=_json_object),
    )),
    FileSpec("plan_courses.csv", m.PlanCourse.__table__, (
        Col("major_code", ("专业代码",), True, _major_code),
        Col("course_code", ("课程代码",), True, _course_code),
        Col("credits", ("学分",), True, lambda s: parse_int(s, 0, 30, "学分")),
        Col("category", ("课程类别", "类别"), parse=_choice(PLAN_CATEGORIES, "课程类别")),
        Col("position", ("序号",), parse=lambda s: parse_int(s, 0, 9999, "序号")),
    ), informational=("course_name", "major_name"), informational_aliases=("课程名称", "专业名称")),
    FileSpec("textbooks.csv", m.Textbook.__table__, (
        Col("course_code", ("课程代码",), True, _course_code),
        Col("title", ("教材名称", "书名"), True),
        Col("publisher", ("出版社",)),
        Col("editor", ("主编",)),
        Col("edition", ("版次",)),
        Col("syllabus_name", ("考纲名称",)),
        Col("syllabus_author", ("编写单位",)),
        Col("syllabus_version", ("考纲版本",)),
    ), informational=("course_name",), informational_aliases=("课程名称",)),
    FileSpec("candidates.csv", m.Candidate.__table__, (
        _ID,
        Col("id_type", ("证件类型",), parse=_choice(ID_TYPES, "证件类型", {"居民身份证": "身份证"})),
        Col("name", ("姓名",), True),
        Col("password", ("密码", "初始密码"), parse=_password),
        Col("mobile", ("手机号码", "手机号", "手机"), parse=_mobile),
        Col("political_status", ("政治面貌",)),
        Col("household_register", ("户籍所在地", "户籍")),
        Col("landline", ("固定电话",)),
        Col("occupation", ("职业类型", "职业")),
        Col("employer", ("工作单位",)),
        Col("emergency_contact", ("紧急联系人",)),
        Col("emergency_mobile", ("紧急联系人手机号", "紧急联系人手机"), parse=_mobile),
        Col("email", ("电子邮箱", "邮箱"), parse=_email),
        Col("residence", ("现居住地",)),
        Col("prior_education", ("参加自考考前学历", "考前学历")),
        Col("graduated_school", ("毕业学校名称", "毕业学校")),
        Col("full_time_student", ("目前是否全日制在读", "是否全日制在读"), parse=parse_bool),
        Col("current_school", ("在读学校名称", "在读学校")),
        Col("study_mode", ("学习方式",)),
        Col("mailing_address", ("通讯地址",)),
        Col("postcode", ("邮政编码", "邮编"), parse=_postcode),
        Col("disability", ("视力/听力/行动等", "视力、听力、行动等", "残疾情况")),
    )),
    FileSpec("admission_numbers.csv", m.AdmissionNumber.__table__, (
        Col("admission_number", ("准考证号", "number"), True, _admission_number),
        _ID,
        Col("registered_on", ("注册日期", "报名日期"), parse=parse_date),
        Col("major_codes", ("专业代码", "major_code", "专业")),
    ), informational=("name",), informational_aliases=("姓名",)),
    FileSpec("scores.csv", m.ScoreRecord.__table__, (
        Col("admission_number", ("准考证号",), True, _admission_number),
        Col("course_code", ("课程代码",), True, _course_code),
        Col("sitting", ("考次",), parse=_sitting),
        Col("kind", ("记录类型", "成绩类型"), parse=_choice(
            SCORE_KINDS, "记录类型", {v: k for k, v in SCORE_KINDS.items()} | {"补登成绩": "backfill"})),
        Col("score", ("成绩",), parse=parse_score),
        Col("passed_on", ("通过时间", "通过日期"), parse=parse_month_or_date),
        Col("note", ("备注", "说明")),
        Col("id_number", ("证件号码", "身份证号码", "身份证号")),
    ), informational=("course_name", "name"), informational_aliases=("课程名称", "姓名")),
    FileSpec("business_windows.csv", m.BusinessWindow.__table__, (
        Col("kind", ("业务", "业务类型"), True, _choice(
            WINDOW_KINDS, "业务", {v: k for k, v in WINDOW_KINDS.items()})),
        Col("title", ("标题", "名称"), True),
        Col("sitting", ("考次",), parse=_sitting),
        Col("opens_at", ("开始时间", "开放时间"), True, parse_datetime),
        Col("closes_at", ("结束时间", "截止时间"), True, parse_datetime),
        Col("notice", ("考生须知", "须知")),
    )),
    FileSpec("orders.csv", Order.__table__, (
        Col("order_number", ("订单号", "订单编号"), True, lambda s: _code_text(s)),
        Col("admission_number", ("准考证号",), True, _admission_number),
        Col("major_code", ("专业代码",), True, _major_code),
        Col("item", ("项目", "缴费项目")),
        Col("amount", ("金额", "应缴金额"), True, parse_amount),
        Col("status", ("状态", "订单状态"), parse=_choice(
            ORDER_STATUSES, "订单状态", {v: k for k, v in ORDER_STATUSES.items()} | {"未缴费": "pending"})),
        Col("created_at", ("下单时间", "创建时间"), parse=parse_datetime),
        Col("paid_at", ("缴费时间", "支付时间"), parse=parse_datetime),
        Col("closed_at", ("关闭时间",), parse=parse_datetime),
    ), informational=("name", "major_name"), informational_aliases=("姓名", "专业名称")),
    FileSpec("transfers_in.csv", TransferIn.__table__, (
        Col("reference", ("转入编号", "编号"), True, lambda s: _code_text(s)),
        Col("admission_number", ("准考证号",), True, _admission_number),
        Col("from_province", ("来源省", "转出省"), True, _province),
        Col("from_admission_number", ("来源准考证号", "原准考证号"), True, _other_admission_number),
        Col("major_code", ("转入专业", "专业代码"), True, _major_code),
        Col("applied_on", ("申请日期", "申请时间"), parse=parse_date),
        Col("status", ("状态", "审核状态"), parse=_choice(
            TRANSFER_IN_STATUSES, "状态", {v: k for k, v in TRANSFER_IN_STATUSES.items()})),
        Col("reason", ("未通过原因", "原因")),
        Col("confirm_at", ("现场确认时间", "现场确认开始时间"), parse=parse_datetime),
        Col("confirm_ends_at", ("现场确认结束时间",), parse=parse_datetime),
        Col("confirm_place", ("现场确认地点",)),
        Col("confirm_bring", ("携带材料", "需携带材料", "现场确认材料")),
        Col("id_number", ("证件号码", "身份证号码", "身份证号")),
    ), informational=("name", "major_name"), informational_aliases=("姓名", "专业名称")),
    FileSpec("transfer_in_courses.csv", TransferInCourse.__table__, (
        Col("reference", ("转入编号", "编号"), True, lambda s: _code_text(s)),
        Col("course_code", ("课程代码",), True, _course_code),
        Col("source_name", ("原课程名称", "外省课程名称")),
        Col("score", ("成绩",), parse=parse_score),
        Col("passed_on", ("通过时间", "通过日期"), parse=parse_month_or_date),
        Col("accepted", ("是否认定", "认定结果", "认定"), parse=_accepted),
        Col("note", ("不认定原因", "备注", "说明")),
        Col("position", ("序号",), parse=lambda s: parse_int(s, 0, 9999, "序号")),
    ), informational=("course_name",), informational_aliases=("课程名称",)),
    # 论文指导教师 assigned to approved thesis applications (storage/thesis.py), pushed to the candidate.
    FileSpec("thesis_advisors.csv", Application.__table__, (
        Col("application", ("申请编号", "论文申请编号"), parse=lambda s: parse_int(s, 1, 2**31 - 1, "申请编号")),
        Col("admission_number", ("准考证号",), parse=_admission_number),
        Col("major_code", ("专业代码",), parse=_major_code),
        Col("advisor", ("指导教师", "指导教师姓名"), True, lambda s: _limited(s, "指导教师", thesis.ADVISOR_MAX)),
        Col("contact", ("联系方式", "指导教师联系方式"), True, lambda s: _limited(s, "联系方式", thesis.CONTACT_MAX)),
    ), informational=("name", "major_name"), informational_aliases=("姓名", "专业名称")),
)
SPECS += (
    FileSpec("degree_requirements.csv", DegreeRequirement.__table__, (
        Col("major_code", ("专业代码",), True, _major_code),
        Col("code", ("材料代码",), True, _material_code),
        Col("name", ("材料名称",), True),
        Col("group_name", ("材料类别", "类别", "组别")),
        Col("fields", ("填写项", "填写内容"), parse=_material_fields),
        Col("photo_required", ("需要照片", "照片"), parse=parse_bool),
        Col("min_score", ("最低分", "最低成绩", "最低分数"), parse=_min_score),
        Col("note", ("说明", "备注")),
        Col("position", ("序号",), parse=lambda s: parse_int(s, 0, 9999, "序号")),
        Col("active", ("启用", "是否启用"), parse=parse_bool),
    ), informational=("major_name",), informational_aliases=("专业名称",)),
)
SPEC_BY_FILE = {s.file: s for s in SPECS}
# The report line for candidate_majors rows, which come from admission_numbers.csv.
ENROLMENTS = "admission_numbers.csv(报考专业)"
FILE_ORDER = [s.file for s in SPECS]


def _parse_row(spec: FileSpec, line: int, raw: dict[str, str], report: ImportReport) -> tuple[dict[str, Any], bool]:
    """Typed values of the good non-empty cells, and whether every cell was good (errors reported)."""
    out: dict[str, Any] = {}
    ok = True
    for col in spec.columns:
        text = raw.get(col.name, "")
        if not text.strip():
            if col.required:
                report.error(spec.file, line, f"{col.label}不能为空")
                ok = False
            continue
        try:
            if col.parse is not None:
                out[col.name] = col.parse(text)
            else:
                value = text.strip()
                target = spec.table.c.get(col.model_column or col.name)
                limit = getattr(getattr(target, "type", None), "length", None)
                if limit and len(value) > limit:
                    raise Bad(f"{col.label}过长（{len(value)} 字，最多 {limit} 字）")
                out[col.name] = value
        except Bad as exc:
            report.error(spec.file, line, str(exc))
            ok = False
    return out, ok


# --- Validated content of one import --------------------------------------------------------------


@dataclass
class Rec:
    line: int
    values: dict[str, Any]


@dataclass
class Batch:
    """What the files say, validated row by row and keyed by natural keys."""

    sittings: dict[str, Rec] = field(default_factory=dict)
    courses: dict[str, Rec] = field(default_factory=dict)
    majors: dict[str, Rec] = field(default_factory=dict)
    plan: dict[tuple[str, str], Rec] = field(default_factory=dict)
    textbooks: dict[tuple[str, str, str], Rec] = field(default_factory=dict)
    candidates: dict[str, Rec] = field(default_factory=dict)
    admissions: dict[str, Rec] = field(default_factory=dict)
    enrolments: dict[tuple[str, str], Rec] = field(default_factory=dict)  # (id_number, major) -> admission
    scores: dict[tuple[str, str, str, str], Rec] = field(default_factory=dict)
    windows: dict[tuple[str, str], Rec] = field(default_factory=dict)
    orders: dict[str, Rec] = field(default_factory=dict)
    transfers_in: dict[str, Rec] = field(default_factory=dict)
    transfer_courses: dict[tuple[str, str], Rec] = field(default_factory=dict)
    advisors: dict[tuple[Any, ...], Rec] = field(default_factory=dict)  # thesis_advisors.csv
    degree_requirements: dict[tuple[str, str], Rec] = field(default_factory=dict)


def _add(report: ImportReport, file: str, into: dict, key: Any, rec: Rec, show: str) -> None:
    first = into.get(key)
    if first is None:
        into[key] = rec
    elif first.values == rec.values:
        report.warn(file, rec.line, f"与第 {first.line} 行完全相同（{show}），已忽略")
    else:
        report.error(file, rec.line, f"与第 {first.line} 行重复（{show}）但内容不同")


def _check_id(values: dict[str, Any], file: str, line: int, report: ImportReport) -> bool:
    id_type = values.get("id_type", "身份证")
    raw = values["id_number"]
    n = values["id_number"] = normalize_id_number(raw)
    if id_type in ID_TYPES_WITH_CHECK_DIGIT:
        if valid_id_number(n):
            return True
        masked = mask_id_number(n) if len(n) > 8 else "（过短）"
        if len(n) != 18 or not re.fullmatch(r"\d{17}[\dX]", n):
            report.error(file, line, f"证件号码 {masked} 应为 18 位（17 位数字加校验位）{_scientific_hint(raw)}")
        elif id_check_digit(n[:17]) != n[17]:
            report.error(file, line, f"证件号码 {masked} 校验位不对")
        else:
            report.error(file, line, f"证件号码 {masked} 中的出生日期不存在")
        return False
    if not re.fullmatch(r"[A-Z0-9()\-]{5,32}", n):
        report.error(file, line, f"{id_type}号码格式不对（5-32 位字母或数字）")
        return False
    return True


def _validate(tables: dict[str, RawTable], report: ImportReport) -> Batch:
    b = Batch()
    for file in FILE_ORDER:
        table = tables.get(file)
        if table is None:
            continue
        spec = SPEC_BY_FILE[file]
        report.result(file).encoding = table.encoding
        report.result(file).rows = len(table.rows)
        for line, raw in table.rows:
            v, ok = _parse_row(spec, line, raw, report)
            if file == "candidates.csv" and "id_number" in v and ("id_type" in v or not raw.get("id_type", "").strip()):
                # Check the ID even when another cell is bad, so one pass shows every problem
                # (not when the 证件类型 itself is unreadable: the check depends on it).
                ok = _check_id(v, file, line, report) and ok
            if not ok:
                continue
            rec = Rec(line, v)
            if file == "sittings.csv":
                v.setdefault("name", sitting_label(v["code"]))
                _add(report, file, b.sittings, v["code"], rec, f"考次 {v['code']}")
            elif file == "courses.csv":
                _add(report, file, b.courses, v["code"], rec, f"课程 {v['code']}")
            elif file == "majors.csv":
                _add(report, file, b.majors, v["code"], rec, f"专业 {v['code']}")
            elif file == "plan_courses.csv":
                _add(report, file, b.plan, (v["major_code"], v["course_code"]), rec,
                     f"专业 {v['major_code']} 课程 {v['course_code']}")
            elif file == "textbooks.csv":
                v.setdefault("edition", "")
                _add(report, file, b.textbooks, (v["course_code"], v["title"], v["edition"]), rec,
                     f"课程 {v['course_code']} 教材《{v['title']}》{v['edition']}")
            elif file == "candidates.csv":
                _add(report, file, b.candidates, v["id_number"], rec, f"证件号码 {mask_id_number(v['id_number'])}")
            elif file == "admission_numbers.csv":
                _validate_admission(v, rec, b, report)
            elif file == "scores.csv":
                _validate_score(v, rec, b, report)
            elif file == "business_windows.csv":
                if v["closes_at"] <= v["opens_at"]:
                    report.error(file, line, "结束时间应晚于开始时间")
                    continue
                _add(report, file, b.windows, (v["kind"], v["title"]), rec, f"业务 {v['kind']}《{v['title']}》")
            elif file == "orders.csv":
                _validate_order(v, rec, b, report)
            elif file == "transfers_in.csv":
                _validate_transfer_in(v, rec, b, report)
            elif file == "transfer_in_courses.csv":
                _validate_transfer_course(v, rec, b, report)
            elif file == "thesis_advisors.csv":
                _validate_advisor(v, rec, b, report)
            elif file == "degree_requirements.csv":
                _validate_degree_requirement(v, rec, b, report)
    # Plan positions default to the order of the rows within each major (and courses of a
    # transfer record to their order within it).
    seen: dict[str, int] = {}
    for (major, _), rec in sorted(b.plan.items(), key=lambda kv: kv[1].line):
        seen[major] = seen.get(major, 0) + 1
        rec.values.setdefault("position", seen[major])
    seen = {}
    for (ref, _), rec in sorted(b.transfer_courses.items(), key=lambda kv: kv[1].line):
        seen[ref] = seen.get(ref, 0) + 1
        rec.values.setdefault("position", seen[ref])
    seen = {}
    for (major, _), rec in sorted(b.degree_requirements.items(), key=lambda kv: kv[1].line):
        seen[major] = seen.get(major, 0) + 1
        rec.values.setdefault("position", seen[major])
    return b


def _validate_advisor(v: dict[str, Any], rec: Rec, b: Batch, report: ImportReport) -> None:
    file = "thesis_advisors.csv"
    if "application" in v:
        key: tuple[Any, ...] = ("application", v["application"])
        show = f"申请编号 {v['application']}"
    elif "admission_number" in v and "major_code" in v:
        key = (v["admission_number"], v["major_code"])
        show = f"准考证号 {v['admission_number']} 专业 {v['major_code']}"
    else:
        report.error(file, rec.line, "请填写申请编号，或准考证号和专业代码")
        return
    _add(report, file, b.advisors, key, rec, show)


def _validate_degree_requirement(v: dict[str, Any], rec: Rec, b: Batch, report: ImportReport) -> None:
    """A material a major's 主考学校 asks of degree applicants: its fields become asks_* flags."""
    file = "degree_requirements.csv"
    if "fields" in v:
        asked = v.pop("fields")
        for f in degree.FIELD_NAMES:
            v[f"asks_{f}"] = f in asked
    if "min_score" in v and not v.get("asks_score"):
        report.error(file, rec.line, "填了最低分，填写项中也须有“成绩”")
        return
    _add(report, file, b.degree_requirements, (v["major_code"], v["code"]), rec,
         f"专业 {v['major_code']} 材料 {v['code']}")


def _validate_transfer_in(v: dict[str, Any], rec: Rec, b: Batch, report: ImportReport) -> None:
    file = "transfers_in.csv"
    if len(v["reference"]) > 32:
        report.error(file, rec.line, f"转入编号“{v['reference']}”过长（最多 32 位）")
        return
    if v.get("confirm_at") and v.get("confirm_ends_at") and v["confirm_ends_at"] <= v["confirm_at"]:
        report.error(file, rec.line, "现场确认结束时间应晚于开始时间")
        return
    if "id_number" in v:
        v["id_number"] = normalize_id_number(v["id_number"])
    _add(report, file, b.transfers_in, v["reference"], rec, f"转入编号 {v['reference']}")


def _validate_transfer_course(v: dict[str, Any], rec: Rec, b: Batch, report: ImportReport) -> None:
    file = "transfer_in_courses.csv"
    if "score" in v:
        v["score"], v["grade"] = v["score"]
        if not score_passes(v["score"], v["grade"]):
            report.error(file, rec.line, "转入的只能是已合格的成绩（60分及以上，或 合格/通过）")
            return
    problem = transfers.course_problem(v.get("accepted"), v.get("note"))
    if problem:
        report.error(file, rec.line, f"“不认定原因”列：{problem}")
        return
    _add(report, file, b.transfer_courses, (v["reference"], v["course_code"]), rec,
         f"转入编号 {v['reference']} 课程 {v['course_code']}")


_MAJOR_SPLIT = re.compile(r"[;；、/|\s]+")


def _validate_admission(v: dict[str, Any], rec: Rec, b: Batch, report: ImportReport) -> None:
    file = "admission_numbers.csv"
    v["id_number"] = normalize_id_number(v["id_number"])
    codes: list[str] = []
    for part in _MAJOR_SPLIT.split(v.pop("major_codes", "") or ""):
        if not part:
            continue
        try:
            codes.append(_major_code(part))
        except Bad as exc:
            report.error(file, rec.line, str(exc))
            return
    v["majors"] = tuple(dict.fromkeys(codes))
    before = len(b.admissions)
    _add(report, file, b.admissions, v["admission_number"], rec, f"准考证号 {v['admission_number']}")
    if len(b.admissions) == before:
        return
    for code in v["majors"]:
        key = (v["id_number"], code)
        first = b.enrolments.get(key)
        if first is not None and first.values["admission_number"] != v["admission_number"]:
            report.error(file, rec.line, f"专业 {code} 已在第 {first.line} 行登记在准考证号 "
                                         f"{first.values['admission_number']} 下，同一考生同一专业只能登记一次")
        else:
            b.enrolments[key] = Rec(rec.line, {"admission_number": v["admission_number"]})


def _validate_order(v: dict[str, Any], rec: Rec, b: Batch, report: ImportReport) -> None:
    file = "orders.csv"
    status = v.setdefault("status", "pending")
    if len(v["order_number"]) > 32:
        report.error(file, rec.line, f"订单号“{v['order_number']}”过长（最多 32 位）")
        return
    if status == "paid" and not v.get("paid_at"):
        report.error(file, rec.line, "已缴费的订单必须填写缴费时间")
        return
    if status != "paid" and v.get("paid_at"):
        report.error(file, rec.line, f"{ORDER_STATUSES[status]}的订单不填缴费时间")
        return
    if status != "closed" and v.get("closed_at"):
        report.error(file, rec.line, f"{ORDER_STATUSES[status]}的订单不填关闭时间")
        return
    _add(report, file, b.orders, v["order_number"], rec, f"订单号 {v['order_number']}")


def _validate_score(v: dict[str, Any], rec: Rec, b: Batch, report: ImportReport) -> None:
    file = "scores.csv"
    kind = v.setdefault("kind", "exam")
    score, grade = v.pop("score", (None, None))
    v["score"], v["grade"] = score, grade
    if kind in ("exam", "backfill") and score is None and grade is None:
        report.error(file, rec.line, f"{SCORE_KINDS[kind]}记录必须填写成绩")
        return
    if kind == "exam":
        if not v.get("sitting"):
            report.error(file, rec.line, "考试成绩必须填写考次")
            return
    elif v.get("sitting"):
        report.error(file, rec.line, f"{SCORE_KINDS[kind]}记录不填考次（时间填在“通过时间”列）")
        return
    if kind in ("exemption", "transfer"):
        # Only approved exemptions and accepted transfers are results; they count as passed.
        v["passed"] = (score is None and grade is None) or score_passes(score, grade)
        if not v["passed"]:
            report.error(file, rec.line, f"{SCORE_KINDS[kind]}记录只导入已认定的课程，成绩不能不及格")
            return
    else:
        v["passed"] = score_passes(score, grade)
    v["sitting_code"] = v.pop("sitting", "") or ""
    if "id_number" in v:
        v["id_number"] = normalize_id_number(v["id_number"])
    key = (v["admission_number"], v["course_code"], v["sitting_code"], kind)
    _add(report, file, b.scores, key, rec,
         f"准考证号 {key[0]} 课程 {key[1]} {('考次 ' + key[2]) if key[2] else SCORE_KINDS[kind]}")


# --- Database side --------------------------------------------------------------------------------


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


async def _rows_where_in(session: AsyncSession, table: Table, column: str, keys: Iterable[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    keys = sorted(set(keys))
    for chunk in _chunks(keys):
        res = await session.execute(select(table).where(table.c[column].in_(chunk)))
        out.extend(dict(r) for r in res.mappings())
    return out


@dataclass
class Known:
    """What the database already holds that the import refers to."""

    majors: set[str]
    courses: set[str]
    sittings: dict[str, dict[str, Any]]
    candidates: dict[str, int]  # id_number -> id
    admissions: dict[str, tuple[int, str]]  # number -> (candidate_id, owner's id_number)
    transfers_in: dict[str, dict[str, Any]] = field(default_factory=dict)  # reference -> stored row
    # thesis_advisors.csv: line -> (the approved thesis application, or None and why not)
    advisor_targets: dict[int, tuple[Any, str]] = field(default_factory=dict)


async def _load_known(session: AsyncSession, b: Batch) -> Known:
    majors = set((await session.execute(select(m.Major.code))).scalars())
    courses = set((await session.execute(select(m.Course.code))).scalars())
    sittings = {r["code"]: dict(r) for r in (await session.execute(select(m.Sitting.__table__))).mappings()}
    numbers = set(b.admissions) | {k[0] for k in b.scores} | {r.values["admission_number"] for r in b.orders.values()}
    numbers |= {r.values["admission_number"] for r in b.transfers_in.values()}
    admissions: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(sorted(numbers)):
        res = await session.execute(
            select(m.AdmissionNumber.number, m.AdmissionNumber.candidate_id, m.Candidate.id_number)
            .join(m.Candidate, m.Candidate.id == m.AdmissionNumber.candidate_id)
            .where(m.AdmissionNumber.number.in_(chunk))
        )
        admissions.update({n: (cid, idn) for n, cid, idn in res})
    ids = set(b.candidates) | {r.values["id_number"] for r in b.admissions.values()}
    candidates: dict[str, int] = {}
    for chunk in _chunks(sorted(ids)):
        # ID numbers are encrypted at rest: rows are found by their blind index.
        res = await session.execute(select(m.Candidate.id_number, m.Candidate.id)
                                    .where(m.Candidate.id_index.in_([keys.id_index(x) for x in chunk])))
        candidates.update({idn: cid for idn, cid in res})
    refs = set(b.transfers_in) | {ref for ref, _ in b.transfer_courses}
    stored = {r["reference"]: r for r in await _rows_where_in(session, TransferIn.__table__, "reference", refs)}
    known = Known(majors, courses, sittings, candidates, admissions, stored)
    if b.advisors:
        known.advisor_targets = await thesis.find_targets(session, [
            thesis.AdvisorTarget(rec.line, rec.values.get("application"), rec.values.get("admission_number", ""),
                                 rec.values.get("major_code", ""), thesis.Advisor(rec.values["advisor"], rec.values["contact"]))
            for rec in b.advisors.values()])
    return known


def _check_references(b: Batch, k: Known, report: ImportReport) -> None:
    majors = k.majors | set(b.majors)
    courses = k.courses | set(b.courses)
    sittings = set(k.sittings) | set(b.sittings)
    ids = set(k.candidates) | set(b.candidates)
    for (major, course), rec in b.plan.items():
        if major not in majors:
            report.error("plan_courses.csv", rec.line, f"专业代码 {major} 不存在（majors.csv 和数据库中都没有）")
        if course not in courses:
            report.error("plan_courses.csv", rec.line, f"课程代码 {course} 不存在（courses.csv 和数据库中都没有）")
    for (course, _, _), rec in b.textbooks.items():
        if course not in courses:
            report.error("textbooks.csv", rec.line, f"课程代码 {course} 不存在（courses.csv 和数据库中都没有）")
    for number, rec in b.admissions.items():
        idn = rec.values["id_number"]
        if idn not in ids:
            report.error("admission_numbers.csv", rec.line,
                         f"证件号码 {mask_id_number(idn)} 的考生不存在（candidates.csv 和数据库中都没有）")
        owner = k.admissions.get(number)
        if owner is not None and owner[1] != idn:
            report.error("admission_numbers.csv", rec.line,
                         f"准考证号 {number} 在数据库中属于另一考生（{mask_id_number(owner[1])}），不能改到 {mask_id_number(idn)} 名下")
        for code in rec.values["majors"]:
            if code not in majors:
                report.error("admission_numbers.csv", rec.line, f"专业代码 {code} 不存在（majors.csv 和数据库中都没有）")
    for (number, course, sitting, _), rec in b.scores.items():
        owner_id = b.admissions[number].values["id_number"] if number in b.admissions else (
            k.admissions[number][1] if number in k.admissions else None)
        if owner_id is None:
            report.error("scores.csv", rec.line, f"准考证号 {number} 不存在（admission_numbers.csv 和数据库中都没有）")
        elif rec.values.get("id_number") and rec.values["id_number"] != owner_id:
            report.error("scores.csv", rec.line, f"准考证号 {number} 不属于证件号码 {mask_id_number(rec.values['id_number'])}")
        if course not in courses:
            report.error("scores.csv", rec.line, f"课程代码 {course} 不存在（courses.csv 和数据库中都没有）")
        if sitting and sitting not in sittings:
            report.error("scores.csv", rec.line, f"考次 {sitting} 不存在（sittings.csv 和数据库中都没有）")
    for number, rec in b.orders.items():
        admission = rec.values["admission_number"]
        if admission not in b.admissions and admission not in k.admissions:
            report.error("orders.csv", rec.line, f"准考证号 {admission} 不存在（admission_numbers.csv 和数据库中都没有）")
        if rec.values["major_code"] not in majors:
            report.error("orders.csv", rec.line, f"专业代码 {rec.values['major_code']} 不存在（majors.csv 和数据库中都没有）")
    _check_transfer_references(b, k, report, majors, courses)
    for rec in b.advisors.values():
        app, why = k.advisor_targets.get(rec.line, (None, "没有找到论文申请"))
        if app is None:
            report.error("thesis_advisors.csv", rec.line, why)
    for (major, _), rec in b.degree_requirements.items():
        if major not in majors:
            report.error("degree_requirements.csv", rec.line, f"专业代码 {major} 不存在（majors.csv 和数据库中都没有）")
    for (kind, _), rec in b.windows.items():
        sitting = rec.values.get("sitting")
        if sitting and sitting not in sittings:
            report.error("business_windows.csv", rec.line, f"考次 {sitting} 不存在（sittings.csv 和数据库中都没有）")


def _check_transfer_references(b: Batch, k: Known, report: ImportReport, majors: set[str], courses: set[str]) -> None:
    file = "transfers_in.csv"
    for ref, rec in b.transfers_in.items():
        v = rec.values
        number = v["admission_number"]
        owner_id = b.admissions[number].values["id_number"] if number in b.admissions else (
            k.admissions[number][1] if number in k.admissions else None)
        if owner_id is None:
            report.error(file, rec.line, f"准考证号 {number} 不存在（admission_numbers.csv 和数据库中都没有）")
        elif v.get("id_number") and v["id_number"] != owner_id:
            report.error(file, rec.line, f"准考证号 {number} 不属于证件号码 {mask_id_number(v['id_number'])}")
        if v["major_code"] not in majors:
            report.error(file, rec.line, f"专业代码 {v['major_code']} 不存在（majors.csv 和数据库中都没有）")
        stored = k.transfers_in.get(ref)
        if stored is not None and stored["admission_number"] != number:
            report.error(file, rec.line, f"转入编号 {ref} 在数据库中属于准考证号 {stored['admission_number']}，不能改到 {number} 名下")
        merged = {**(stored or {}), **{c: x for c, x in v.items() if c != "id_number"}}
        status = merged.get("status") or "pending"
        problem = transfers.transition_problem(stored["status"] if stored else None, status)
        if problem:
            report.error(file, rec.line, problem)
            continue
        for p in transfers.record_problems(status, reason=merged.get("reason"), confirm_at=merged.get("confirm_at"),
                                           place=merged.get("confirm_place")):
            report.error(file, rec.line, p)
    for (ref, course), rec in b.transfer_courses.items():
        if ref not in b.transfers_in and ref not in k.transfers_in:
            report.error("transfer_in_courses.csv", rec.line, f"转入编号 {ref} 不存在（transfers_in.csv 和数据库中都没有）")
        if course not in courses:
            report.error("transfer_in_courses.csv", rec.line, f"课程代码 {course} 不存在（courses.csv 和数据库中都没有）")


def _keep_paid_in_wechat(existing: dict[str, Any], col: str) -> bool:
    """An order paid through WeChat Pay (storage/payments.py) keeps its state, amount and times:
    an export made before the payment must not make it 待缴费 again."""
    return existing.get("transaction_id") is not None and col in ("status", "amount", "paid_at", "closed_at")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return a.astimezone(dt.timezone.utc) == b.astimezone(dt.timezone.utc)
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return a is not None and b is not None and Decimal(a) == Decimal(b)
    return a == b


async def _upsert(
    session: AsyncSession,
    table: Table,
    key: tuple[str, ...],
    rows: list[dict[str, Any]],
    result: FileResult,
    *,
    defaults: dict[str, Any] | None = None,
    insert_only: tuple[str, ...] = (),
    keep: Callable[[dict[str, Any], str], bool] | None = None,
    returning: tuple[str, ...] = (),
) -> list[Any]:
    """Insert rows whose natural key is new, update rows that differ, count the unchanged.

    Each row carries the columns to set; a column a row lacks keeps its stored value. Columns in
    `insert_only` are written on insert and never compared or overwritten. `keep(existing, col)`
    may protect a stored value from being overwritten. Returns the `returning` columns of
    inserted rows.
    """
    if not rows:
        return []
    existing: dict[tuple, dict[str, Any]] = {}
    for r in await _rows_where_in(session, table, key[0], {row[key[0]] for row in rows}):
        existing[tuple(r[c] for c in key)] = r
    pk = [c.name for c in table.primary_key.columns]
    inserts: list[dict[str, Any]] = []
    updates: dict[frozenset, list[dict[str, Any]]] = {}
    for row in rows:
        old = existing.get(tuple(row[c] for c in key))
        if old is None:
            inserts.append(row)
            continue
        changed = {
            c: v for c, v in row.items()
            if c not in insert_only and c not in key and not _same(old.get(c), v)
            and not (keep is not None and keep(old, c))
        }
        if not changed:
            result.unchanged += 1
            continue
        if "updated_at" in table.c:
            changed["updated_at"] = m.utcnow()
        # Bind names must differ from column names in an executemany UPDATE.
        params = {f"v_{c}": v for c, v in changed.items()} | {f"pk_{c}": old[c] for c in pk}
        updates.setdefault(frozenset(changed), []).append(params)
    for cols, params in updates.items():
        stmt = update(table).where(*[table.c[c] == bindparam(f"pk_{c}") for c in pk]).values(
            {c: bindparam(f"v_{c}", type_=table.c[c].type) for c in cols}
        )
        await session.execute(stmt, params)
        result.updated += len(params)
    out: list[Any] = []
    if inserts:
        names = list(dict.fromkeys(c for row in inserts for c in row))
        base = {c: None for c in names} | (defaults or {})
        full = [base | row for row in inserts]  # executemany needs the same keys in every row
        if returning:
            res = await session.execute(insert(table).returning(*[table.c[c] for c in returning]), full)
            out = list(res)
        else:
            await session.execute(insert(table), full)
        result.inserted += len(inserts)
    return out


async def _in_threads(fn: Callable[[str], str], items: list[str]) -> list[str]:
    """Map `fn` over `items` on every core, off the event loop (scrypt releases the GIL)."""
    if not items:
        return []
    workers = min(os.cpu_count() or 2, len(items))
    slices = [items[i::workers] for i in range(workers)]
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="scrypt") as pool:
        done = await asyncio.gather(*(loop.run_in_executor(pool, lambda sl=sl: [fn(x) for x in sl]) for sl in slices))
    out: list[str] = [""] * len(items)
    for i, part in enumerate(done):
        out[i::workers] = part
    return out


async def _write(session: AsyncSession, b: Batch, k: Known, report: ImportReport) -> None:
    present = {f.file for f in report.files}

    def r(file: str) -> FileResult:
        # Files that were not imported get a throwaway result, so the report lists only real files.
        return report.result(file) if file in present or file == ENROLMENTS else FileResult(file)
    await _upsert(session, m.Sitting.__table__, ("code",), [x.values for x in b.sittings.values()], r("sittings.csv"))
    # Defaults apply to new rows only: an empty cell never overwrites what is stored.
    await _upsert(
        session, m.Course.__table__, ("code",), [x.values for x in b.courses.values()], r("courses.csv"),
        defaults={"kind": "理论"},
    )
    await _upsert(session, m.Major.__table__, ("code",), [x.values for x in b.majors.values()], r("majors.csv"))
    await _upsert(
        session, m.PlanCourse.__table__, ("major_code", "course_code"),
        [x.values for x in b.plan.values()], r("plan_courses.csv"), defaults={"category": "必考"},
    )
    await _upsert(
        session, m.Textbook.__table__, ("course_code", "title", "edition"),
        [x.values for x in b.textbooks.values()], r("textbooks.csv"),
    )

    # Candidates: the password is hashed only for new people and never overwritten.
    cand_rows: list[dict[str, Any]] = []
    given: dict[str, str] = {}
    initial: list[str] = []
    for idn, rec in b.candidates.items():
        cand_rows.append({c: v for c, v in rec.values.items() if c != "password"})
        if idn in k.candidates:
            continue
        if rec.values.get("password"):
            given[idn] = rec.values["password"]
        else:
            initial.append(idn)
    if any("password" in rec.values for idn, rec in b.candidates.items() if idn in k.candidates):
        report.warn("candidates.csv", 0, "已有考生的密码不会被导入覆盖（密码列只用于新考生）")
    hashes = dict(zip(given, await _in_threads(hash_password, list(given.values()))))
    hashes.update(zip(initial, await _in_threads(hash_initial_password, initial)))
    for row in cand_rows:
        row["id_index"] = keys.id_index(row["id_number"])
        if row["id_number"] in hashes:
            row["password_hash"] = hashes[row["id_number"]]
    now = m.utcnow()

    def keep_candidate(old: dict[str, Any], col: str) -> bool:
        # A number the candidate confirmed by SMS is newer than the office's records.
        return col == "mobile" and old.get("mobile_verified_at") is not None

    inserted = await _upsert(
        session, m.Candidate.__table__, ("id_index",), cand_rows, r("candidates.csv"),
        defaults={"id_type": "身份证", "created_at": now, "updated_at": now},
        insert_only=("password_hash",), keep=keep_candidate, returning=("id_number", "id"),
    )
    cand_ids = dict(k.candidates) | {idn: cid for idn, cid in inserted}

    await _upsert(
        session, m.AdmissionNumber.__table__, ("number",),
        [
            {"number": n, "candidate_id": cand_ids[rec.values["id_number"]]}
            | ({"registered_on": rec.values["registered_on"]} if "registered_on" in rec.values else {})
            for n, rec in b.admissions.items()
        ],
        r("admission_numbers.csv"),
    )
    if b.enrolments:
        res = r(ENROLMENTS)
        res.rows = len(b.enrolments)
        await _upsert(
            session, m.CandidateMajor.__table__, ("candidate_id", "major_code"),
            [
                {"candidate_id": cand_ids[idn], "major_code": major, "admission_number": rec.values["admission_number"]}
                for (idn, major), rec in b.enrolments.items()
            ],
            res,
        )

    exam_dates = {c: s.get("exam_date") for c, s in k.sittings.items()}
    exam_dates.update({c: rec.values.get("exam_date") for c, rec in b.sittings.items()})
    owners = {n: cand_ids[rec.values["id_number"]] for n, rec in b.admissions.items()}
    score_rows = []
    for (number, course, sitting, kind), rec in b.scores.items():
        v = rec.values
        passed_on = v.get("passed_on")
        if passed_on is None and v["passed"] and kind == "exam":
            passed_on = exam_dates.get(sitting) or dt.date(int(sitting[:4]), int(sitting[4:]), 1)
        row = {
            "admission_number": number, "course_code": course, "sitting_code": sitting, "kind": kind,
            "candidate_id": owners.get(number) or k.admissions[number][0],
            "score": v["score"], "grade": v["grade"], "passed": v["passed"], "passed_on": passed_on,
        }
        if "note" in v:
            row["note"] = v["note"]
        score_rows.append(row)
    new_scores = await _upsert(
        session, m.ScoreRecord.__table__, ("admission_number", "course_code", "sitting_code", "kind"),
        score_rows, r("scores.csv"), returning=("candidate_id", "sitting_code", "kind"),
    )
    # Score release: candidates with new exam results are told (in this transaction) that
    # results are out; a re-import inserts nothing and so tells nobody again.
    released: dict[str, set[int]] = {}
    for candidate_id, sitting, kind in new_scores:
        if kind == "exam":
            released.setdefault(sitting, set()).add(candidate_id)
    for sitting, rows in (await outbox.release_imported_scores(session, released)).items():
        log.info("score release of sitting %s: %d pushes queued", sitting, rows)
    await _upsert(
        session, m.BusinessWindow.__table__, ("kind", "title"),
        [
            {"kind": kind, "title": title, "opens_at": rec.values["opens_at"], "closes_at": rec.values["closes_at"]}
            | ({"sitting_code": rec.values["sitting"]} if "sitting" in rec.values else {})
            | ({"notice": rec.values["notice"]} if "notice" in rec.values else {})
            for (kind, title), rec in b.windows.items()
        ],
        r("business_windows.csv"), defaults={"notice": ""},
    )
    await _upsert(
        session, Order.__table__, ("order_number",),
        [rec.values | {"candidate_id": owners.get(rec.values["admission_number"])
                       or k.admissions[rec.values["admission_number"]][0]}
         for rec in b.orders.values()],
        r("orders.csv"), defaults={"item": GRADUATION_FEE, "created_at": m.utcnow()},
        keep=_keep_paid_in_wechat,
    )
    await _write_transfers(session, b, k, r, owners)
    if b.advisors:
        # Each changed 指导教师 is recorded on its approved thesis application and pushed.
        found = [(k.advisor_targets[rec.line][0], thesis.Advisor(rec.values["advisor"], rec.values["contact"]))
                 for rec in b.advisors.values()]
        updated, unchanged, pushes = await thesis.apply_advisors(session, found, by="导入 thesis_advisors.csv",
                                                                 now=m.utcnow())
        r("thesis_advisors.csv").updated += updated
        r("thesis_advisors.csv").unchanged += unchanged
        log.info("thesis advisors: %d assigned or changed, %d pushes queued", updated, pushes)
    await _upsert(
        session, DegreeRequirement.__table__, ("major_code", "code"),
        [rec.values for rec in b.degree_requirements.values()], r("degree_requirements.csv"),
        defaults={"asks_score": False, "asks_month": False, "asks_province": False, "asks_number": False,
                  "photo_required": True, "active": True, "position": 0},
    )
    # The read caches of every process (storage/queries.py) drop what this import changed.
    if any(f.inserted or f.updated for f in report.files):
        await queries.mark_changed(session)


async def _write_transfers(session: AsyncSession, b: Batch, k: Known, r: Callable[[str], FileResult],
                           owners: dict[str, int]) -> None:
    """外省转入 records and their courses; each new record and each change of status (or of the
    现场确认 slot of a record waiting for it) is pushed, and 已完成 credits the accepted courses."""
    if not b.transfers_in and not b.transfer_courses:
        return
    now = m.utcnow()
    rows = []
    for ref, rec in b.transfers_in.items():
        v = {c: x for c, x in rec.values.items() if c != "id_number"}
        v["candidate_id"] = owners.get(v["admission_number"]) or k.admissions[v["admission_number"]][0]
        rows.append(v)
    await _upsert(session, TransferIn.__table__, ("reference",), rows, r("transfers_in.csv"),
                  defaults={"status": "pending", "status_changes": 0, "created_at": now, "updated_at": now})
    ids = {row["reference"]: row["id"] for row in await _rows_where_in(
        session, TransferIn.__table__, "reference", set(b.transfers_in) | {ref for ref, _ in b.transfer_courses})}
    await _upsert(
        session, TransferInCourse.__table__, ("transfer_id", "course_code"),
        [{c: x for c, x in rec.values.items() if c != "reference"} | {"transfer_id": ids[ref]}
         for (ref, _), rec in b.transfer_courses.items()],
        r("transfer_in_courses.csv"),
    )
    changed = []
    for ref, rec in b.transfers_in.items():
        old, new = k.transfers_in.get(ref), rec.values
        slot = ("confirm_at", "confirm_place")
        if old is None or ("status" in new and new["status"] != old["status"]) or (
                (new.get("status") or old["status"]) == "confirming"
                and any(c in new and not _same(new[c], old[c]) for c in slot)):
            changed.append(ids[ref])
    for row in (await session.execute(select(TransferIn).where(TransferIn.id.in_(changed)))).scalars():
        await transfers.status_changed(session, row, now)
    # Courses accepted later for a record already 已完成 become results too.
    done = [ids[ref] for ref, _ in b.transfer_courses]
    await transfers.credit_accepted(session, done)


# --- Entry points ---------------------------------------------------------------------------------


async def import_tables(db: Database, tables: dict[str, RawTable], report: ImportReport, *, dry_run: bool = False) -> ImportReport:
    """Validate and import already-read tables (keys: file names such as 'scores.csv')."""
    started = time.monotonic()
    batch = _validate(tables, report)
    async with db.session() as session:
        # One transaction: the reads the checks rely on and every write, committed together or not at all.
        known = await _load_known(session, batch)
        _check_references(batch, known, report)
        if report.errors or dry_run:
            await session.rollback()
        else:
            try:
                await _write(session, batch, known, report)
                await session.commit()
            except Exception as exc:  # a constraint the checks above missed: nothing is kept
                log.exception("import of %s failed while writing", report.source)
                await session.rollback()
                report.error("", 0, f"写入数据库失败，未导入任何数据: {type(exc).__name__}")
                for r in report.files:
                    r.inserted = r.updated = r.unchanged = 0
    order = {f: i for i, f in enumerate([*FILE_ORDER[:FILE_ORDER.index("admission_numbers.csv") + 1], ENROLMENTS])}
    report.files.sort(key=lambda r: order.get(r.file, len(order)))
    report.committed = report.ok and not dry_run
    report.seconds = time.monotonic() - started
    log.info(
        "import of %s: %s, %d errors, %s", report.source, "committed" if report.committed else "not committed",
        len(report.errors), ", ".join(f"{r.file} +{r.inserted} ~{r.updated} ={r.unchanged}" for r in report.files),
    )
    return report


def read_directory(path: str | os.PathLike[str], report: ImportReport) -> dict[str, RawTable]:
    directory = Path(path)
    if not directory.is_dir():
        report.error("", 0, f"目录不存在: {directory}")
        return {}
    found = {p.name.lower(): p for p in sorted(directory.iterdir()) if p.is_file()}
    tables: dict[str, RawTable] = {}
    for name, p in found.items():
        spec = SPEC_BY_FILE.get(name)
        if spec is not None:
            t = read_table(p, spec, report)
            if t is not None:
                tables[spec.file] = t
        elif name.endswith((".xlsx", ".xls")):
            report.warn(p.name, 0, "Excel 文件不能直接导入，请另存为 CSV")
        elif name.endswith(".csv"):
            report.warn(p.name, 0, f"不认识的文件名，已忽略（可导入的文件: {', '.join(FILE_ORDER)}）")
    if not tables and not report.errors:
        report.error("", 0, f"目录中没有可导入的 CSV 文件（文件名应为: {', '.join(FILE_ORDER)}）")
    return tables


async def import_directory(db: Database, path: str | os.PathLike[str], *, dry_run: bool = False) -> ImportReport:
    """Import every known CSV file in `path`; nothing is written if any row has an error.

    `dry_run=True` validates everything (including references to the database) and writes nothing.
    """
    report = ImportReport(source=str(path))
    tables = read_directory(path, report)
    if not tables:
        return report
    return await import_tables(db, tables, report, dry_run=dry_run)
