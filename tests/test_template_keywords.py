"""Every template the service sends fills exactly the keywords the emulator registers for it,
under the labels docs/wechat-setup.md tells the operator to choose in the 公众平台."""
import datetime as dt

import pytest

from bot.cli import DEMO_ENV
from bot.delivery import TEMPLATE_KINDS
from emulator.api import DEFAULT_TEMPLATES
from storage import outbox
from storage.models import BusinessWindow, Notice

UTC = dt.timezone.utc
AT = dt.datetime(2026, 12, 1, 2, 30, tzinfo=UTC)


def _window(kind: str) -> BusinessWindow:
    return BusinessWindow(kind=kind, title="2027年上半年申请免考", opens_at=AT, closes_at=AT + dt.timedelta(days=10))


def _every_template_sent() -> list[tuple[str, dict[str, str]]]:
    """(template kind, data) of every push the causes write, through the causes' own builders."""
    notice = Notice(category="站内消息", title="关于2027年4月考试报名的通知", body="正文", publish_at=AT)
    sent = [
        ("review_result", outbox.review_texts("申请免考", True, AT)[1]),
        ("review_result", outbox.review_texts("成绩补登", False, AT)[1]),
        ("exam_notice", outbox.notice_texts(notice)[1]),
        ("score_release", outbox.score_release_texts("2026年10月", AT)[1]),
    ]
    for kind in outbox.KIND_KEYWORDS:
        sent.append(("business_reminder", outbox.window_open_texts(_window(kind))[1]))
        sent.append(("business_reminder", outbox.window_closing_texts(_window(kind))[1]))
    return sent


def _emulator_template(kind: str) -> dict:
    template_id = DEMO_ENV[f"TEMPLATE_{kind.upper()}"]
    return DEFAULT_TEMPLATES[template_id]


def test_every_template_kind_has_a_keyword_table_and_an_emulator_template():
    assert set(outbox.TEMPLATE_KEYWORDS) == set(TEMPLATE_KINDS)
    for kind in TEMPLATE_KINDS:
        assert _emulator_template(kind)["labels"] == outbox.TEMPLATE_KEYWORDS[kind], kind


@pytest.mark.parametrize("kind,data", _every_template_sent(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_push_fills_exactly_the_registered_keywords(kind, data):
    assert set(data) == set(_emulator_template(kind)["labels"])
    assert all(v and len(v) <= outbox.TEMPLATE_VALUE_MAX and "\n" not in v for v in data.values())


def test_notice_template_shows_publish_time_not_an_exam_time():
    labels = _emulator_template("exam_notice")["labels"]
    notice = Notice(category="站内消息", title="报名通知", body="正文", publish_at=AT)
    data = outbox.notice_texts(notice)[1]
    shown = {labels[k]: v for k, v in data.items()}
    assert shown["发布时间"] == "2026年12月01日 10:30"
    assert shown["说明"].startswith("回复")
