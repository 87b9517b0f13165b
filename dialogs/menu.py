"""The custom menu and the keywords: the one place that says which words and buttons lead where.

A button's key is an intent name (``query:...``, ``flow:...`` or ``menu:...``); the router runs
intents, whichever way they arrive (button, keyword, FAQ action). `zikao-bot menu sync` pushes
`wechat_menu()` to WeChat. WeChat's limits: 3 top buttons of at most 16 bytes, 5 sub-buttons
each of at most 60 bytes; our labels are kept to 4 characters so that every phone shows them whole.
"""
from __future__ import annotations

import re
from typing import Any, Optional

MENU: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("查询", (
        ("查成绩", "query:latest_scores"),
        ("考试计划", "query:plan"),
        ("毕业进度", "query:progress"),
        ("消息通知", "menu:messages"),
        ("可办业务", "query:windows"),
    )),
    ("办理", (
        ("申请免考", "flow:exemption"),
        ("成绩补登", "flow:backfill"),
        ("毕业学位", "menu:graduation"),
        ("省际转考", "menu:transfer"),
        ("我的订单", "query:orders"),
    )),
    ("我的", (
        ("账户绑定", "menu:account"),
        ("个人信息", "query:profile"),
        ("凭证样例", "query:samples"),
        ("反馈建议", "flow:feedback"),
        ("帮助咨询", "menu:help"),
    )),
)

# A button that covers several businesses opens a short numbered list. A list is not a flow:
# nothing is filled in, so there is nothing to cancel; its numbers answer only the next message,
# and a newer numbered question (which major, which FAQ entry) replaces it (dialogs/router.py).
SUBMENUS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "menu:messages": ("消息通知", (
        ("站内消息", "query:messages"),
        ("新闻通知", "query:news"),
    )),
    "menu:graduation": ("毕业与学位", (
        ("本科论文与专科毕设", "flow:thesis"),
        ("申请毕业", "flow:graduation"),
        ("申请学位", "flow:degree"),
        ("毕业审定费（我的订单）", "query:orders"),
    )),
    "menu:transfer": ("省际转考", (
        ("外省转入（查看进度）", "flow:transfer_in"),
        ("本市转出", "flow:transfer_out"),
    )),
    "menu:account": ("账户", (
        ("绑定考生信息", "flow:bind"),
        ("切换准考证号", "flow:switch_number"),
        ("修改密码", "flow:password"),
        ("修改联系方式", "flow:contact"),
        ("解除绑定", "flow:unbind"),
    )),
    "menu:help": ("帮助咨询", (
        ("使用帮助", "help"),
        ("技术咨询电话", "query:contacts"),
        ("历史成绩", "query:all_scores"),
        ("可办业务", "query:windows"),
    )),
}

# Exact words (after trimming) -> intent. Words the pushes tell people to reply (storage.outbox
# KIND_KEYWORDS, NOTICE_KEYWORD, SCORES_KEYWORD) must be here.
KEYWORDS: dict[str, str] = {}


def _kw(intent: str, *words: str) -> None:
    for w in words:
        KEYWORDS[w] = intent


_kw("help", "帮助", "菜单", "help", "?", "？", "你好", "您好", "hi", "hello", "在吗", "功能")
_kw("flow:bind", "绑定", "登录", "登陆", "绑定考生信息", "绑定账号", "绑定准考证")
_kw("flow:unbind", "解绑", "解除绑定", "取消绑定", "退出登录")
_kw("flow:password", "修改密码", "改密码", "密码修改")
_kw("flow:switch_number", "切换准考证号", "切换准考证", "切换", "更换准考证号")
_kw("query:profile", "个人信息", "我的信息", "个人资料")
_kw("query:materials", "我的材料", "材料", "我的凭证", "证明材料", "已上传材料", "上传的材料")
_kw("flow:contact", "修改联系方式", "修改手机", "修改手机号", "换手机号", "修改邮箱", "修改地址")
_kw("query:latest_scores", "成绩", "查成绩", "当次成绩", "本次成绩", "查分", "最新成绩", "成绩查询")
_kw("query:all_scores", "历史成绩", "历次成绩", "全部成绩", "所有成绩")
_kw("query:plan", "考试计划", "计划", "专业计划", "我的计划")
_kw("query:progress", "毕业进度", "进度", "还差什么", "还差几门")
_kw("query:windows", "可办业务", "近期业务", "可办理的业务", "业务", "办理业务", "未开放的业务")
_kw("menu:messages", "消息通知")
_kw("query:messages", "消息", "站内消息", "我的消息", "站内信")
_kw("query:news", "新闻", "通知", "新闻通知", "公告")
_kw("query:orders", "我的订单", "订单", "缴费", "毕业审定费")
_kw("query:samples", "凭证样例", "样例", "证书样例")
_kw("query:contacts", "技术咨询", "咨询", "客服", "人工", "电话", "联系方式")
_kw("flow:feedback", "反馈", "反馈建议", "建议", "投诉")
_kw("flow:exemption", "免考", "申请免考", "办理免考")
_kw("flow:backfill", "成绩补登", "补登")
_kw("flow:thesis", "论文", "毕设", "本科论文", "专科毕设", "论文毕设")
_kw("menu:graduation", "毕业", "毕业学位", "毕业业务")
_kw("flow:graduation", "申请毕业", "办理毕业")
_kw("flow:degree", "学位", "申请学位", "学士学位")
_kw("menu:transfer", "转考", "省际转考")
_kw("flow:transfer_out", "转出", "本市转出")
_kw("flow:transfer_in", "转入", "外省转入")
_kw("menu:account", "账户", "账号")
_kw("query:applications", "我的申请", "申请进度", "审核进度", "审核结果", "免考进度", "补登进度", "申请记录")


# Keywords with an argument: "教材 03708", "消息 2", "专业说明".
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(?:教材|考纲|教材考纲)\s*(\S*)$"), "query:textbooks"),
    (re.compile(r"^(?:消息|站内消息)\s*(\d{1,3})$"), "query:message"),
    (re.compile(r"^(?:样例|凭证样例)\s*(\d{1,2})$"), "query:sample"),
    (re.compile(r"^(?:新闻|新闻通知)\s*(\d{1,3})$"), "query:news"),
    (re.compile(r"^专业说明\s*(\S*)$"), "query:major_notes"),
    (re.compile(r"^(?:计划|考试计划)\s*(\d{6}[KkTt]?)$"), "query:plan"),
    (re.compile(r"^(?:进度|毕业进度)\s*(\d{6}[KkTt]?)$"), "query:progress"),
)


def intent_of(text: str) -> Optional[tuple[str, str]]:
    """(intent, argument) for a keyword or pattern, or None."""
    t = text.strip().rstrip("。.!！?？") or text.strip()
    if t in KEYWORDS:
        return KEYWORDS[t], ""
    low = t.lower()
    if low in KEYWORDS:
        return KEYWORDS[low], ""
    for pattern, intent in PATTERNS:
        m = pattern.match(t)
        if m:
            return intent, m.group(1)
    return None


def submenu(key: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(title, the numbered list as the candidate reads it, [(intent, label)]) of a submenu key."""
    title, items = SUBMENUS[key]
    lines = [f"【{title}】请回复序号："] + [f"{i}. {label}" for i, (label, _) in enumerate(items, 1)]
    return title, "\n".join(lines), [(intent, label) for label, intent in items]


def menu_text() -> str:
    """The menu as text, for help replies (and chats where the menu bar is hidden)."""
    lines = ["菜单（点击对话框下方，或直接回复文字）："]
    for top, subs in MENU:
        lines.append(f"【{top}】" + "、".join(label for label, _ in subs))
    return "\n".join(lines)


def wechat_menu() -> dict[str, Any]:
    """The body of WeChat's menu/create API."""
    return {"button": [
        {"name": top, "sub_button": [{"type": "click", "name": label, "key": key} for label, key in subs]}
        for top, subs in MENU
    ]}


def check_menu(menu: dict[str, Any]) -> list[str]:
    """Problems WeChat would refuse (or phones would cut): empty list when the menu is fine."""
    problems = []
    buttons = menu.get("button", [])
    if not 1 <= len(buttons) <= 3:
        problems.append(f"{len(buttons)} top buttons (1-3 allowed)")
    for b in buttons:
        name = b.get("name", "")
        if len(name.encode()) > 16:
            problems.append(f"top label {name!r} over 16 bytes")
        subs = b.get("sub_button", [])
        if len(subs) > 5:
            problems.append(f"{name!r} has {len(subs)} sub-buttons (at most 5)")
        for sb in subs:
            if len(sb.get("name", "").encode()) > 60:
                problems.append(f"sub label {sb.get('name')!r} over 60 bytes")
            if len(sb.get("name", "")) > 4:
                problems.append(f"sub label {sb.get('name')!r} longer than 4 characters (cut on small phones)")
            if len(sb.get("key", "").encode()) > 128:
                problems.append(f"key {sb.get('key')!r} over 128 bytes")
    return problems
