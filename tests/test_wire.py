"""Inbound XML to plain Messages, Replies to XML."""
import pytest

from bot.wire import BadXML, parse_xml, reply_xml, to_message
from dialogs.types import Reply


def test_text_message_fields():
    m = to_message(parse_xml(b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>"
                             b"<CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                             b"<Content><![CDATA[\xe6\x88\x90\xe7\xbb\xa9]]></Content><MsgId>42</MsgId></xml>"))
    assert (m.openid, m.kind, m.text, m.msg_id) == ("o1", "text", "成绩", "42")


def test_template_finish_event_uses_msgID_spelling():
    m = to_message(parse_xml("<xml><FromUserName>o1</FromUserName><MsgType>event</MsgType>"
                             "<Event>TEMPLATESENDJOBFINISH</Event><MsgID>200163836</MsgID><Status>success</Status></xml>"))
    assert m.event == "TEMPLATESENDJOBFINISH" and m.msg_id == "200163836" and m.status == "success"


def test_unknown_type_is_kept_as_unknown():
    assert to_message(parse_xml("<xml><FromUserName>o</FromUserName><MsgType>miniprogrampage</MsgType></xml>")).kind == "unknown"


@pytest.mark.parametrize("body", [b"", b"not xml", b"<html></html>", b"<xml><a></xml>",
                                  b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml>&a;</xml>'])
def test_malformed_bodies_are_refused(body):
    with pytest.raises(BadXML):
        parse_xml(body)


def test_reply_escapes_cdata_terminator():
    xml = reply_xml(Reply("a]]>b"), to_user="o1", from_user="gh")
    assert parse_xml(xml)["Content"] == "a]]>b"
