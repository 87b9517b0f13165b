"""Demo data: fictional candidates, real plans and textbooks, and business windows around today.

The static part lives in storage/demo/*.csv in the import format (docs/import.md) and goes
through the normal importer. Business windows (and the sittings they belong to) are made
relative to the day of loading, so some are open now, some closed and some upcoming.
Loading twice on the same day changes nothing; on a later day only the window times move.
With `windows_now` (`zikao-bot demo --windows-now`) every application window (申请免考, 成绩补登,
本科论文与专科毕设, 申请毕业, 申请学位, 本市转出) is open from an hour ago for a week instead, so that
each flow can be tried; loading again without it puts the windows back.

Every demo candidate's password is the initial one: the last 6 characters of the ID number.
Two notices of the office (站内消息) are added once, dated a few days back and already pushed.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from storage.db import Database
from storage.identifiers import sitting_label
from storage.importer import SHANGHAI, ImportReport, RawTable, import_tables, read_directory
from storage.models import Notice
from storage.vocab import WINDOW_KINDS

DEMO_DIR = Path(__file__).resolve().parent / "demo"


class DemoLoadError(RuntimeError):
    """The packaged demo data did not import; the message is the import report."""


# Fictional candidates in storage/demo/candidates.csv, for tests and the emulator's chat page.
DEMO_CANDIDATES = {
    "张伟": "310115199203154215",  # two 准考证号: 690206 行政管理(专科) and 020301K 金融学(专升本)
    "李娜": "310104199508123322",  # 120402 行政管理(专升本), 英语(二) exempted
    "王磊": "310110199011234518",  # 120103 工程管理(专升本), transfers from 江苏, thesis passed
    "陈静": "31011219990605262X",  # 690206 行政管理(专科), failures and an absence (缺考)
    "刘洋": "310106199702190919",  # 020301K 金融学(专升本), new; a 外省转入 from 浙江 awaiting 现场确认
}


def half_year_sittings(today: dt.date) -> tuple[str, str]:
    """(current, next): Shanghai sits in April and October; 'current' is the latest begun by today."""
    year, month = (today.year, 10) if today.month >= 10 else (today.year, 4) if today.month >= 4 else (today.year - 1, 10)
    current = f"{year}{month:02d}"
    nxt = f"{year}10" if month == 4 else f"{year + 1}04"
    return current, nxt


def exam_date(code: str) -> dt.date:
    """A plausible exam Saturday: the first on or after 12 April / 20 October."""
    year, month = int(code[:4]), int(code[4:])
    d = dt.date(year, month, 12 if month == 4 else 20)
    return d + dt.timedelta(days=(5 - d.weekday()) % 7)


def half_year_name(code: str) -> str:
    return f"{code[:4]}年{'上' if code[4:] == '04' else '下'}半年"


@dataclass(frozen=True)
class DemoWindow:
    kind: str
    for_next_sitting: bool  # 免考, 补登 and 转出 serve the coming sitting; graduation the one just held
    opens: tuple[int, int]  # (days from today, hour) in Shanghai time
    closes: tuple[int, int]
    notice: str


WINDOWS = (
    DemoWindow("exemption", True, (-5, 9), (10, 16), """\
一、申请免考的课程须为本人所报考专业考试计划中的课程，可一次勾选多门课程提交申请。
二、每门课程须提供相应凭证（如 PETS-2/3 合格证书或成绩通知单、大学英语四级（CET-4）成绩单、学历证书或毕业证书等），凭证须真实有效。使用毕业证书申请免考的，还须同时提供教育部学历证书电子注册备案表或中国高等教育学历认证报告。
三、凭证照片须为 JPG 或 PNG 格式，清晰完整、文字方向端正，每张不超过 1MB。
四、申请提交后状态为“待审核”，审核前可修改后重新提交；审核未通过的，可在办理时间内按审核意见修改后重新提交。
五、审核通过的课程记为“免考”，计入相应学分，无需再参加该课程考试。
六、逾期不再受理，请在下一次办理时间内申请。"""),
    DemoWindow("backfill", True, (-12, 9), (18, 16), """\
一、成绩补登仅适用于平台未显示的历史成绩，须在毕业前、办理时间内申请，并如实提供证明材料。
二、理论与实践课程：仅限 2002 年及以前取得的合格成绩。
三、免考：仅限 2020 年以前已审核通过、但平台未显示的免考课程；新的免考请通过“申请免考”办理。
四、转入：仅限 2020 年以前已办理、但平台未显示的转入课程；新的转入请通过“外省转入”办理。
五、审核通过的补登成绩与其他成绩同等计算；审核结果出来前，登记记录可以编辑。
六、提供虚假材料的，一经查实，取消相应成绩并按有关规定处理。"""),
    DemoWindow("graduation", False, (-3, 9), (14, 16), """\
一、申请毕业的考生须已取得本专业考试计划规定的全部课程合格成绩（含加考课程），达到最低毕业学分；本科（专升本）专业须毕业论文合格。
二、请核对并更新个人信息，确保手机号码为本人当前使用的号码，以便接收审核结果通知。
三、如认为本人符合毕业条件但平台显示缺少课程，请逐项填写情况说明。
四、自我鉴定不少于 200 字，内容将打印在毕业生登记表上。
五、本科（专升本）专业须提供前置学历毕业证书：2002 年及以后毕业的，须提供教育部学历证书电子注册备案表（含在线验证码）；2002 年以前毕业的，须提供中国高等教育学历认证报告。
六、审核通过后，请在缴费时间内通过“我的订单”缴纳毕业审定费，逾期未缴费的视为放弃本次毕业申请。"""),
    DemoWindow("thesis", False, (-60, 7), (-8, 22), """\
一、本科论文与专科毕业设计须在办理时间内申请，逾期不予受理。
二、申请前请核对本专业成绩；有加考要求的专业，须选择相应的加考选项。
三、须上传前置学历毕业证书（编号、获取时间、省份及照片），照片须清晰完整。
四、提交后由主考院校预审，预审通过后分配指导教师，请及时与指导教师联系，按主考院校要求完成论文（毕业设计）写作与答辩。
五、论文（毕业设计）不计学分，成绩以“合格”或“不合格”记载。"""),
    DemoWindow("transfer_out", True, (-3, 9), (25, 16), """\
一、本市转出适用于需将上海市自学考试合格成绩转往外省（区、市）的考生。
二、申请前请先确认转入地接收所转课程的成绩，并已取得转入地准考证号。
三、请填写转入地、转入准考证号、转入层次、转入专业、转出原因和联系电话，并勾选需要转出的成绩。
四、转出手续办结后，已转出的课程成绩在本市不再保留。
五、审核未通过的，可在办理时间内按审核意见修改后重新申请。"""),
    DemoWindow("degree", False, (21, 9), (45, 16), """\
一、申请学士学位的考生须已取得本科（专升本）毕业证书或本次毕业审核已通过，并符合主考院校的学位授予条件。
二、请核对个人信息：籍贯、联系地址、手机号码、紧急联系手机为必填项，工作单位、单位电话可选填。
三、请按主考院校要求上传材料，如学位外语成绩（大学英语四级成绩单须填写成绩、获取时间、省份并上传照片）。
四、各主考院校学位授予条件不同，以主考院校公布的学士学位授予细则为准。
五、提交后请留意站内消息和微信通知。"""),
    DemoWindow("graduation_fee", False, (30, 9), (40, 16), """\
一、毕业审核通过的考生须在缴费时间内缴纳毕业审定费，缴费入口在首页“我的订单”。
二、请核对订单中的姓名、准考证号和专业，确认无误后再缴费。
三、缴费成功后不予退费；逾期未缴费的，视为放弃本次毕业申请，可在下一次毕业办理时间内重新申请。"""),
)

# What `windows_now` opens: every window a candidate applies in (the payment period has --pay-now).
APPLICATION_WINDOWS = frozenset(w.kind for w in WINDOWS) - {"graduation_fee"}

FOOTER = "如有疑问，请拨打技术咨询电话 400-0960-990。"


def _at(base: dt.date, offset: tuple[int, int]) -> dt.datetime:
    day = base + dt.timedelta(days=offset[0])
    return dt.datetime(day.year, day.month, day.day, offset[1], tzinfo=SHANGHAI)


def _fmt(t: dt.datetime) -> str:
    t = t.astimezone(SHANGHAI)
    return f"{t.year}年{t.month}月{t.day}日 {t:%H:%M}"


def window_records(now: dt.datetime, *, windows_now: bool = False
                   ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(sittings, business_windows) rows, in the import format, for the half-year around `now`;
    with `windows_now` the application windows are open from an hour ago for a week."""
    local = now.astimezone(SHANGHAI).replace(minute=0, second=0, microsecond=0)
    today = local.date()
    current, nxt = half_year_sittings(today)
    sittings = []
    for code in (current, nxt):
        d = exam_date(code)
        released = dt.datetime.combine(d + dt.timedelta(days=27), dt.time(10), SHANGHAI)
        sittings.append({
            "code": code, "name": sitting_label(code), "exam_date": d.isoformat(),
            "scores_released_at": released.isoformat() if code == current else "",
        })
    windows = []
    for w in WINDOWS:
        sitting = nxt if w.for_next_sitting else current
        opens, closes = _at(today, w.opens), _at(today, w.closes)
        if windows_now and w.kind in APPLICATION_WINDOWS:  # from the last full hour but one, for a week
            opens, closes = local - dt.timedelta(hours=1), local + dt.timedelta(days=7)
        windows.append({
            "kind": w.kind,
            "title": f"{half_year_name(sitting)}{WINDOW_KINDS[w.kind]}",
            "sitting": sitting,
            "opens_at": opens.isoformat(),
            "closes_at": closes.isoformat(),
            "notice": f"办理时间：{_fmt(opens)} 至 {_fmt(closes)}\n{w.notice}\n{FOOTER}",
        })
    return sittings, windows


def transfer_records(now: dt.datetime) -> list[dict[str, str]]:
    """刘洋's 外省转入 (transfers_in.csv rows): reviewed, 现场确认 in three days at 09:00; its
    courses are in storage/demo/transfer_in_courses.csv."""
    today = now.astimezone(SHANGHAI).date()
    return [{
        "reference": "ZR-DEMO-0001", "admission_number": "012525100086", "from_province": "浙江省",
        "from_admission_number": "330122100086", "major_code": "020301K",
        "applied_on": (today - dt.timedelta(days=20)).isoformat(), "status": "待现场确认",
        "confirm_at": _at(today, (3, 9)).isoformat(), "confirm_ends_at": _at(today, (3, 11)).isoformat(),
        "confirm_place": "上海市教育考试院（徐汇区漕溪北路 331 号）一楼自考服务窗口",
        "confirm_bring": "身份证原件；浙江省自考办出具的转出成绩单原件及复印件",
    }]


def notice_records(now: dt.datetime) -> list[dict]:
    """The demo's 站内消息: registration for the next sitting and its timetable, dated days back."""
    today = now.astimezone(SHANGHAI).date()
    _current, nxt = half_year_sittings(today)
    name, sat = half_year_name(nxt), exam_date(nxt)
    sun = sat + dt.timedelta(days=1)
    return [
        {
            "title": f"{name}上海市高等教育自学考试网上报名提示",
            "publish_at": _at(today, (-7, 9)),
            "body": (
                f"{name}上海市高等教育自学考试定于{sat.month}月{sat.day}日至{sun.month}月{sun.day}日举行。\n"
                "一、报名采用网上报名方式，考生登录考生服务平台选择报考课程并缴费，缴费成功即报名成功。\n"
                "二、新生须先完成网上注册和现场确认，再进行课程报考。\n"
                "三、请在报名截止前完成缴费，逾期未缴费的视为放弃报考。\n"
                "四、准考证请于考前一周在考生服务平台自行打印。\n" + FOOTER
            ),
        },
        {
            "title": f"{name}上海市高等教育自学考试日程安排表",
            "publish_at": _at(today, (-2, 10)),
            "body": (
                f"{sat.month}月{sat.day}日（星期六）上午 9:00-11:30：理论课程第一场\n"
                f"{sat.month}月{sat.day}日（星期六）下午 14:30-17:00：理论课程第二场\n"
                f"{sun.month}月{sun.day}日（星期日）上午 9:00-11:30：理论课程第三场\n"
                f"{sun.month}月{sun.day}日（星期日）下午 14:30-17:00：理论课程第四场\n"
                "各课程的具体场次以准考证为准。请携带准考证和身份证提前 30 分钟到达考点。"
            ),
        },
    ]


async def load_demo_notices(db: Database, now: dt.datetime) -> int:
    """Add the demo notices not yet present (by title); they count as pushed when published."""
    added = 0
    async with db.session() as s, s.begin():
        have = set((await s.execute(select(Notice.title))).scalars())
        for n in notice_records(now):
            if n["title"] in have:
                continue
            s.add(Notice(category="站内消息", title=n["title"], body=n["body"], publish_at=n["publish_at"],
                         audience="all", push=True, created_by="demo", created_at=n["publish_at"],
                         fanned_out_at=n["publish_at"], recipients=0))
            added += 1
    return added


async def load_demo_report(db: Database, now: dt.datetime | None = None, *, windows_now: bool = False
                           ) -> ImportReport:
    """Import the demo data and return the import report (not raising)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    report = ImportReport(source=f"demo ({DEMO_DIR})")
    tables = read_directory(DEMO_DIR, report)
    sittings, windows = window_records(now, windows_now=windows_now)
    static = tables["sittings.csv"]
    known = {row["code"] for _, row in static.rows}
    extra = RawTable.from_records("sittings.csv", [s for s in sittings if s["code"] not in known])
    last = max((line for line, _ in static.rows), default=1)
    static.rows.extend((last + i, row) for i, (_, row) in enumerate(extra.rows, 1))
    tables["business_windows.csv"] = RawTable.from_records("business_windows.csv", windows)
    tables["transfers_in.csv"] = RawTable.from_records("transfers_in.csv", transfer_records(now))
    if report.errors:
        return report
    return await import_tables(db, tables, report)


async def load_demo(db: Database, now: dt.datetime | None = None, *, windows_now: bool = False) -> None:
    """Load (or refresh) the demo data; raises DemoLoadError if anything fails to import.
    `windows_now`: every application window open from an hour ago for a week."""
    now = now or dt.datetime.now(dt.timezone.utc)
    report = await load_demo_report(db, now, windows_now=windows_now)
    if not report.committed:
        raise DemoLoadError(report.format())
    await load_demo_notices(db, now)
