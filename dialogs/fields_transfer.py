"""Typed answers of 本市转出: 转入地 (a province other than Shanghai, by number or name), 转入准考证号
(a plausible number of another province), 联系电话 (mobile or landline), and the results ticked.

They follow dialogs/fields.py (parse what was typed, say what is wrong); the rules themselves are
storage.transfers', shared with the import.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from dialogs import fields as F
from dialogs.fields import Invalid
from dialogs.queries import contact_phone
from storage import transfers as tr

PER_LINE = 5


def _short(name: str) -> str:
    return re.sub(r"(壮族|回族|维吾尔)?自治区$|省$|市$", "", name)


def province_list() -> str:
    """The provinces a result may go to, numbered, five to a line (30 lines would fill a phone)."""
    names = [f"{i}.{_short(p)}" for i, p in enumerate(tr.province_choices(), 1)]
    return "\n".join(" ".join(names[i:i + PER_LINE]) for i in range(0, len(names), PER_LINE))


@dataclass
class TransferProvince(F.Field):
    """转入地: a number of `province_list()` or a province's name (江苏, 江苏省); not Shanghai."""

    hint: str = "请回复序号或省份名称，如 9 或 江苏。"

    def parse_text(self, text: str) -> str:
        s = text.replace(" ", "").rstrip("。.")
        choices = tr.province_choices()
        if s.isdigit():
            if 1 <= int(s) <= len(choices):
                return choices[int(s) - 1]
            raise Invalid(f"请回复1到{len(choices)}之间的序号，或省份名称。")
        found = tr.province_of(s)
        if found == tr.SHANGHAI_PROVINCE:
            raise Invalid("本市转出是把成绩转到外省，转入地不能是上海。")
        if found is None:
            raise Invalid(f"没有“{s}”这个省份，请回复序号或省份名称，如 江苏。")
        return found


@dataclass
class TransferAdmissionNo(F.Field):
    """转入准考证号: 10 to 15 digits (storage.transfers.target_admission_number)."""

    hint: str = "转入省给您的自考准考证号，一般是10到15位数字。"

    def parse_text(self, text: str) -> str:
        try:
            return tr.target_admission_number(text)
        except ValueError as exc:
            raise Invalid(str(exc)) from None


@dataclass
class Phone(F.Field):
    """联系电话: a mobile (13812345678) or a landline with area code (021-12345678)."""

    hint: str = "11位手机号码，或带区号的固定电话，如 021-12345678。"

    def parse_text(self, text: str) -> str:
        return contact_phone(text)


BLOCKED = "!"  # the value of a result that cannot be transferred: "!00015"


@dataclass
class ResultPicks(F.Field):
    """The results to transfer: several numbers of the transferable ones (1,3 / 1 3 / 1-3), or
    course codes and names. `options` holds the transferable results (value = course code) and
    after them those that cannot be transferred (value "!" + code): those are never numbered, but
    naming one gets "!code" back so that the step can say why it cannot go."""

    options: Sequence[F.Option] = ()
    hint: str = "可多选，如 1,3 或 1 3，也可以回复课程代码。"

    def parse_text(self, text: str) -> list[str]:
        open_ = [o for o in self.options if not o[0].startswith(BLOCKED)]
        blocked = [o for o in self.options if o[0].startswith(BLOCKED)]
        picked: list[str] = []
        for part in (p for p in re.split(r"[,，、;；\s]+", text) if p):
            m = re.fullmatch(r"(\d{1,2})-(\d{1,2})", part)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if lo > hi or lo < 1 or hi > len(open_):
                    raise Invalid(f"范围{part}不对，可以转出的成绩序号在1到{len(open_)}之间。")
                chosen = [v for v, _ in open_[lo - 1:hi]]
            elif part.isdigit() and len(part) < 5:
                n = int(part)
                if not 1 <= n <= len(open_):
                    raise Invalid(f"没有第{n}项，可以转出的成绩序号在1到{len(open_)}之间。")
                chosen = [open_[n - 1][0]]
            else:
                chosen = [_by_name(part, open_, blocked)]
            picked += [c for c in chosen if c not in picked]
        if not picked:
            raise Invalid("请至少选择一门要转出的成绩。")
        return picked

    def show(self, value: Any) -> str:
        labels = dict(self.options)
        return "、".join(labels.get(v, v) for v in value or []) or "（未选）"


def _by_name(part: str, open_: Sequence[F.Option], blocked: Sequence[F.Option]) -> str:
    for value, label in [*open_, *blocked]:
        code = value.lstrip(BLOCKED)
        if part == code or part == label.split(" ", 1)[-1].split("｜")[0]:
            return value
    hits = [value for value, label in [*open_, *blocked] if part in label.split("｜")[0]]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise Invalid(f"有几门课程都包含“{part}”，请回复序号或课程代码。")
    raise Invalid(f"您没有“{part}”的合格成绩，请回复列表中的序号。")
