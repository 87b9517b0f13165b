"""Greeting, help and the answers for anything no flow claims yet."""
from __future__ import annotations

from dialogs.types import Message, Reply

WELCOME = (
    "您好，欢迎关注上海自考服务号！\n"
    "在这里可以查询成绩和考试计划、办理免考和毕业等业务，审核结果会第一时间通知您。\n"
    "回复“帮助”查看可以做什么。"
)

HELP = (
    "上海自考服务号可以为您：\n"
    "· 查成绩、考试计划、毕业进度\n"
    "· 申请免考、成绩补登、论文、毕业、学位、转考\n"
    "· 接收审核结果和考试通知\n"
    "请点击下方菜单，或直接回复关键词，如“成绩”。\n"
    "技术咨询电话：400-0960-990"
)

UNKNOWN_TEXT = "抱歉，没有理解您的意思。\n回复“帮助”查看可以做什么，或点击下方菜单。"
UNSUPPORTED_KIND = "暂时只能处理文字和图片消息。\n回复“帮助”查看可以做什么。"
PHOTO_OUT_OF_TURN = "收到您的图片。目前没有需要上传照片的业务。\n办理免考等业务时，按提示发送照片即可。"

HELP_WORDS = frozenset({"帮助", "help", "?", "？", "菜单", "你好", "您好", "hi", "hello"})


def help_reply() -> Reply:
    return Reply(HELP)


def fallback(msg: Message) -> Reply:
    """The answer when nothing else claims a message: never silence."""
    if msg.kind == "text":
        if msg.text.strip().lower() in HELP_WORDS:
            return Reply(HELP)
        return Reply(UNKNOWN_TEXT)
    if msg.kind == "image":
        return Reply(PHOTO_OUT_OF_TURN)
    if msg.kind == "event":
        return Reply(HELP)
    return Reply(UNSUPPORTED_KIND)
