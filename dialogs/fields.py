"""Typed answers: each field parses what a candidate typed, says what is wrong, and shows a value back.

Every flow reuses these (Bot Framework's typed prompts): a field never talks to the database;
checks that need data (does this ID exist, is this course in the plan) belong to the step.
Values are plain JSON (str, int, list) because they live in the dialog state row.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from dialogs.types import Message
from storage import identifiers as ids
from storage import vocab

SHANGHAI = dt.timezone(dt.timedelta(hours=8))

_SPACES = re.compile(r"[\s\u3000\u00a0\u200b]+")
_FULLWIDTH = str.maketrans(
    "０１２３４５６７８９ＸｘＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＹＺ，、；：．－／",
    "0123456789XxABCDEFGHIJKLMNOPQRSTUVWYZ,,;:.-/",
)


class Invalid(ValueError):
    """The answer does not fit; `reason` is what the candidate reads."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def clean(text: str) -> str:
    """Trim and turn full-width digits and punctuation into ASCII; inner spaces kept as one."""
    return _SPACES.sub(" ", (text or "").translate(_FULLWIDTH)).strip()


def today_shanghai() -> dt.date:
    return dt.datetime.now(SHANGHAI).date()


@dataclass
class Field:
    """Base: a text answer. Subclasses override `parse_text` (and `show` when the value needs it)."""

    hint: str = ""  # one line on what is expected, shown after a wrong answer
    optional: bool = False  # "无" / "跳过" leave it empty
    accepts_image: bool = False
    gathers = False  # several answers to one step (photos), until the field reads DONE

    SKIP_WORDS = frozenset({"无", "没有", "跳过", "不填", "略"})

    def parse(self, msg: Message) -> Any:
        if msg.kind == "image":
            if self.accepts_image:
                return self.parse_image(msg)
            raise Invalid("这一步需要回复文字，不是图片。")
        if msg.kind not in ("text", "event"):
            raise Invalid("这一步需要回复文字。")
        text = clean(msg.text)
        if not text:
            raise Invalid("没有收到内容。")
        if self.optional and text in self.SKIP_WORDS:
            return None
        return self.parse_text(text)

    def parse_text(self, text: str) -> Any:
        return text

    def parse_image(self, msg: Message) -> Any:  # pragma: no cover - only photo fields accept images
        raise Invalid("这一步需要回复文字，不是图片。")

    def show(self, value: Any) -> str:
        """How the value reads in a summary or after '返回'."""
        if value is None or value == "":
            return "（未填）"
        return str(value)


@dataclass
class Text(Field):
    min_len: int = 1
    max_len: int = 100

    def parse_text(self, text: str) -> str:
        if len(text) < self.min_len:
            raise Invalid(f"内容太短，至少{self.min_len}个字。")
        if len(text) > self.max_len:
            raise Invalid(f"内容太长，最多{self.max_len}个字，现在是{len(text)}个字。")
        return text


@dataclass
class Secret(Field):
    """A password: never shown back; the engine does not keep it in the state."""

    min_len: int = 1
    max_len: int = 64

    def parse(self, msg: Message) -> Any:
        # Passwords are taken as typed: no trimming of inner spaces, no full-width folding.
        if msg.kind != "text":
            raise Invalid("这一步需要回复文字密码。")
        text = (msg.text or "").strip()
        if not (self.min_len <= len(text) <= self.max_len):
            raise Invalid(f"密码长度应为{self.min_len}-{self.max_len}位。")
        return text

    def show(self, value: Any) -> str:
        return "******"


@dataclass
class IdNumber(Field):
    """证件号码: an 18-character resident ID is checked (GB 11643); other 证件 are shape-checked only."""

    hint: str = "18位身份证号码，最后一位可以是X。"

    def parse_text(self, text: str) -> str:
        s = ids.normalize_id_number(text)
        if len(s) == 18 and s[:17].isdigit():
            if not ids.valid_id_number(s):
                if s[17] != ids.id_check_digit(s[:17]):
                    raise Invalid("证件号码最后一位校验不对，请核对后重新输入。")
                raise Invalid("证件号码中的出生日期不对，请核对后重新输入。")
            return s
        if s.isdigit():
            raise Invalid(f"身份证号码应为18位，您输入了{len(s)}位。")
        # Passports and HK/Macao/Taiwan permits: letters and digits, 5-20 characters.
        if re.fullmatch(r"[A-Z0-9()（）]{5,20}", s) and re.search(r"\d", s):
            return s
        raise Invalid("证件号码格式不对。身份证为18位数字，最后一位可以是X。")

    def show(self, value: Any) -> str:
        return ids.mask_id_number(value) if value else "（未填）"


@dataclass
class AdmissionNo(Field):
    hint: str = "准考证号是12位数字。"

    def parse_text(self, text: str) -> str:
        s = text.replace(" ", "")
        if not s.isdigit():
            raise Invalid("准考证号只含数字，共12位。")
        if len(s) != 12:
            raise Invalid(f"准考证号应为12位数字，您输入了{len(s)}位。")
        return s


@dataclass
class Mobile(Field):
    hint: str = "11位手机号码，如 13812345678。"

    def parse_text(self, text: str) -> str:
        s = ids.normalize_mobile(text)
        if not ids.valid_mobile(s):
            raise Invalid("手机号码应为1开头的11位数字。")
        return s

    def show(self, value: Any) -> str:
        return ids.mask_mobile(value) if value else "（未填）"


@dataclass
class Email(Field):
    hint: str = "如 name@example.com"

    def parse_text(self, text: str) -> str:
        s = text.replace(" ", "")
        if len(s) > 100 or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}", s):
            raise Invalid("邮箱格式不对，应类似 name@example.com。")
        return s


@dataclass
class Postcode(Field):
    hint: str = "6位数字，如 200000。"

    def parse_text(self, text: str) -> str:
        s = text.replace(" ", "")
        if not re.fullmatch(r"\d{6}", s):
            raise Invalid("邮政编码应为6位数字。")
        return s


@dataclass
class Digits(Field):
    """A code of a fixed number of digits (SMS verification code)."""

    length: int = 6

    def parse_text(self, text: str) -> str:
        s = text.replace(" ", "")
        if not s.isdigit() or len(s) != self.length:
            raise Invalid(f"请输入{self.length}位数字。")
        return s


_YM_PATTERNS = (
    re.compile(r"^(\d{4})\s*年\s*(\d{1,2})\s*月?$"),
    re.compile(r"^(\d{4})\s*[-/.]\s*(\d{1,2})$"),
    re.compile(r"^(\d{4})(\d{2})$"),
)


@dataclass
class YearMonth(Field):
    """'2018年6月', '2018-06', '2018/6', '201806' -> '2018-06'. Bounds are inclusive 'YYYY-MM'."""

    hint: str = "如 2018年6月、2018-06 或 201806。"
    not_future: bool = True
    earliest: str = "1950-01"
    latest: Optional[str] = None  # a rule such as "2002年12月及以前"
    latest_reason: str = ""

    def parse_text(self, text: str) -> str:
        s = text.replace(" ", "")
        for p in _YM_PATTERNS:
            m = p.match(s)
            if m:
                year, month = int(m.group(1)), int(m.group(2))
                break
        else:
            raise Invalid("时间格式不对。")
        if not 1 <= month <= 12:
            raise Invalid("月份应在1到12之间。")
        value = f"{year:04d}-{month:02d}"
        if value < self.earliest:
            raise Invalid(f"时间不能早于{self.show(self.earliest)}。")
        if self.not_future:
            now = today_shanghai()
            if value > f"{now.year:04d}-{now.month:02d}":
                raise Invalid("时间不能晚于本月。")
        if self.latest and value > self.latest:
            raise Invalid(self.latest_reason or f"时间不能晚于{self.show(self.latest)}。")
        return value

    def show(self, value: Any) -> str:
        if not value:
            return "（未填）"
        return f"{value[:4]}年{int(value[5:7])}月"


_DATE_PATTERNS = (
    re.compile(r"^(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]?$"),
    re.compile(r"^(\d{4})\s*[-/.]\s*(\d{1,2})\s*[-/.]\s*(\d{1,2})$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
)


@dataclass
class Date(Field):
    hint: str = "如 2018年6月1日、2018-06-01 或 20180601。"
    not_future: bool = True

    def parse_text(self, text: str) -> str:
        s = text.replace(" ", "")
        for p in _DATE_PATTERNS:
            m = p.match(s)
            if m:
                break
        else:
            raise Invalid("日期格式不对。")
        try:
            d = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            raise Invalid("没有这一天，请核对日期。") from None
        if d.year < 1950:
            raise Invalid("日期太早了，请核对。")
        if self.not_future and d > today_shanghai():
            raise Invalid("日期不能晚于今天。")
        return d.isoformat()

    def show(self, value: Any) -> str:
        if not value:
            return "（未填）"
        d = dt.date.fromisoformat(value)
        return f"{d.year}年{d.month}月{d.day}日"


PROVINCES = vocab.PROVINCES  # the 34 provincial-level divisions (storage/vocab.py)


@dataclass
class Province(Field):
    hint: str = "如 上海、江苏省、内蒙古。"

    def parse_text(self, text: str) -> str:
        found = vocab.province_of(text, one_character=True)
        if found is None:
            raise Invalid("没有找到这个省份，请写省、自治区或直辖市的名称。")
        return found


@dataclass
class Score(Field):
    """0-100 (one decimal), or a grade 合格/通过/不合格."""

    hint: str = "0到100的分数，或“合格”“通过”。"

    GRADES = {"合格": "合格", "通过": "通过", "及格": "合格", "不合格": "不合格", "不通过": "不合格"}

    def parse_text(self, text: str) -> str:
        s = text.replace(" ", "").removesuffix("分")
        if s in self.GRADES:
            return self.GRADES[s]
        if not re.fullmatch(r"\d{1,3}(\.\d)?", s):
            raise Invalid("成绩应为0到100的数字（最多一位小数），或“合格”“通过”。")
        v = float(s)
        if v > 100:
            raise Invalid("成绩不能超过100分。")
        return s if "." in s else str(int(v))


YES_WORDS = frozenset({"是", "是的", "好", "好的", "确认", "确定", "对", "对的", "可以", "行", "嗯", "要", "需要",
                       "同意", "y", "yes", "ok", "1"})
NO_WORDS = frozenset({"否", "不", "不是", "不要", "不用", "不需要", "没有", "算了", "n", "no", "2"})


@dataclass
class YesNo(Field):
    hint: str = "请回复“是”或“否”。"

    def parse_text(self, text: str) -> bool:
        s = text.lower().rstrip("。.!！")
        if s in YES_WORDS:
            return True
        if s in NO_WORDS:
            return False
        raise Invalid("请回复“是”或“否”。")

    def show(self, value: Any) -> str:
        return "是" if value else "否"


Option = tuple[str, str]  # (value, label)


def numbered(options: Sequence[Option]) -> str:
    return "\n".join(f"{i}. {label}" for i, (_, label) in enumerate(options, 1))


def _pick_one(text: str, options: Sequence[Option]) -> str:
    s = text.strip().rstrip("。.")
    if s.isdigit():
        n = int(s)
        if 1 <= n <= len(options):
            return options[n - 1][0]
        raise Invalid(f"请回复1到{len(options)}之间的数字。")
    for value, label in options:
        if s in (value, label, clean(label)):  # labels as typed: full-width commas come in folded
            return value
    hits = [value for value, label in options if s and s in clean(label)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise Invalid("有几项都符合，请回复序号。")
    raise Invalid("没有这一项，请回复序号。")


@dataclass
class Choice(Field):
    """One of a numbered list, by number or by name. The engine fills `options` (they may be
    computed per user) and keeps them in the state, so the numbers mean what the user saw."""

    options: Sequence[Option] = ()
    hint: str = "请回复序号。"

    def parse_text(self, text: str) -> str:
        return _pick_one(text, self.options)

    def show(self, value: Any) -> str:
        return dict(self.options).get(value, str(value)) if value is not None else "（未填）"


@dataclass
class MultiChoice(Field):
    """Several of a numbered list: '1,3,4', '1 3 4', '1、3', '1-3', or names."""

    options: Sequence[Option] = ()
    min_count: int = 1
    max_count: Optional[int] = None
    hint: str = "可多选，如 1,3 或 1 3。"

    def parse_text(self, text: str) -> list[str]:
        parts = [p for p in re.split(r"[,，、;；\s]+", text) if p]
        picked: list[str] = []
        for p in parts:
            m = re.fullmatch(r"(\d+)-(\d+)", p)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if lo > hi or lo < 1 or hi > len(self.options):
                    raise Invalid(f"范围{p}不对，序号在1到{len(self.options)}之间。")
                chosen = [self.options[i - 1][0] for i in range(lo, hi + 1)]
            else:
                chosen = [_pick_one(p, self.options)]
            picked += [c for c in chosen if c not in picked]
        if len(picked) < self.min_count:
            raise Invalid(f"请至少选择{self.min_count}项。")
        if self.max_count is not None and len(picked) > self.max_count:
            raise Invalid(f"最多选择{self.max_count}项。")
        return picked

    def show(self, value: Any) -> str:
        labels = dict(self.options)
        return "、".join(labels.get(v, str(v)) for v in value or []) or "（未选）"


@dataclass
class Photo(Field):
    """An image message. The value is {"media_id": ...}; what the photo holds is checked by the
    step (download, Pillow) because that needs the WeChat API."""

    accepts_image: bool = True
    hint: str = "请点击输入框旁的“+”，选择“相册”或“拍摄”发送照片。"

    def parse(self, msg: Message) -> Any:
        if msg.kind not in ("image", "text", "event"):  # a video, a link, a voice message, a file
            raise Invalid("这一步需要发送照片（JPG或PNG），不能是视频、语音、链接或文件。请从相册选择照片发送。")
        return super().parse(msg)

    def parse_text(self, text: str) -> Any:
        raise Invalid("这一步需要发送照片，不是文字。")

    def parse_image(self, msg: Message) -> dict[str, Any]:
        if not msg.media_id:
            raise Invalid("没有收到照片，请重新发送。")
        return {"media_id": msg.media_id}

    def show(self, value: Any) -> str:
        return "已上传1张照片" if value else "（未上传）"


DONE_WORDS = frozenset({"完成", "好了", "发完了", "没有了", "结束", "下一步"})


@dataclass
class Photos(Photo):
    """One or more photos: each image adds one; '完成' ends the step (at least `min_count`).
    The engine keeps the list; the step's check receives each photo (dialogs/components/photos.py)."""

    min_count: int = 1
    max_count: int = 9
    full: str = "最多{n}张照片，回复“完成”继续。"
    gathers = True

    def parse_text(self, text: str) -> Any:
        if text in DONE_WORDS:
            return DONE
        raise Invalid("这一步需要发送照片。发完后回复“完成”。")

    def enough(self, have: list) -> None:
        if len(have) < self.min_count:
            raise Invalid(f"还需要至少{self.min_count}张照片。")

    def room(self, have: list) -> None:
        if len(have) >= self.max_count:
            raise Invalid(self.full.format(n=self.max_count))

    def received(self, count: int) -> str:
        return f"已收到第{count}张照片。可以继续发送，发完请回复“完成”。"

    def show(self, value: Any) -> str:
        n = len(value or [])
        return f"已上传{n}张照片" if n else "（未上传）"


DONE = "__done__"


@dataclass
class Noted:
    """What a step's check returns to keep `value` and say `note` before what comes next."""

    value: Any
    note: str = ""

    @staticmethod
    def split(value: Any) -> tuple[Any, str]:
        return (value.value, value.note) if isinstance(value, Noted) else (value, "")


@dataclass
class Acknowledge(Field):
    """The candidate has read a 考生须知: only "我已知晓" (or the same words shortened) goes on."""

    # What to reply is said once, by the step's `retry` (ACK_RETRY): a reason and a hint as well
    # said it three times over.
    hint: str = ""
    WORDS = frozenset({"我已知晓", "已知晓", "知晓", "我已知晓,继续申请", "我已知晓，继续申请", "我已阅读并知晓"})

    def parse_text(self, text: str) -> str:
        if text.rstrip("。.!！") in self.WORDS:
            return "我已知晓"
        raise Invalid("")


ACK_RETRY = "读完考生须知后，请回复“我已知晓”继续申请；不办理请回复“取消”。"


@dataclass
class OtherAdmissionNo(Field):
    """Another province's 准考证号: its own length, letters and digits."""

    hint: str = "转出省发的准考证号，6到20位数字或字母。"

    def parse_text(self, text: str) -> str:
        s = text.replace(" ", "").upper()
        if not (6 <= len(s) <= 20) or not s.isalnum() or not s.isascii():
            raise Invalid("准考证号应为6到20位数字或字母。")
        return s
