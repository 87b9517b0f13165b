"""情况说明 as a component: one written explanation for one missing requirement (a course not
passed, credits short, the thesis, a 加考选项 not complete), at least
`storage.graduation_rules.EXPLANATION_MIN_CHARS` characters. A flow runs it in a `Loop` over the
requirements still unexplained; it returns its state (`.text`)."""
from __future__ import annotations

from dataclasses import dataclass

from dialogs import fields as F
from dialogs.engine import Component, Ctx, Step, join
from dialogs.fields import Invalid
from storage import graduation_rules as gr

MAX_CHARS = 500


@dataclass
class Prose(F.Text):
    """Written sentences kept as typed (Chinese punctuation and line breaks stay: a 自我鉴定 is
    printed as written); only trimmed. Images and empty messages are refused as by any text."""

    def parse(self, msg) -> str:
        if msg.kind == "image":
            raise Invalid("这一步需要回复文字，不是图片。")
        if msg.kind != "text":
            raise Invalid("这一步需要回复文字。")
        text = (msg.text or "").strip()
        if not text:
            raise Invalid("没有收到内容。")
        return self.parse_text(text)


@dataclass
class Explanation:
    key: str = ""
    label: str = ""  # 行政法学(00261)未取得合格成绩
    position: str = ""  # 第1/2项
    before: str = ""  # the text written earlier, when it is written again
    lead: str = ""
    text: str = ""


def _prompt(ctx: Ctx) -> str:
    st: Explanation = ctx.state
    lines = [st.lead, f"【情况说明 {st.position}】{st.label}"]
    if st.before:
        lines.append(f"原来写的是：{st.before}")
    lines.append(f"如您认为仍符合毕业条件，请写明情况（{gr.EXPLANATION_MIN_CHARS}到{MAX_CHARS}字）：")
    return join(*lines)


async def _check(ctx: Ctx, text: str) -> str:
    n = gr.text_length(text)
    if n < gr.EXPLANATION_MIN_CHARS:
        raise Invalid(f"情况说明至少{gr.EXPLANATION_MIN_CHARS}字，现在{n}字，请写清楚原因。")
    ctx.state.text = text.strip()
    return text


EXPLANATION = Component("explanation", "情况说明", state=Explanation, steps=[
    Step("text", "情况说明", Prose(min_len=1, max_len=MAX_CHARS), _prompt, check=_check, asides=False,
         retry=lambda ctx: f"请写明「{ctx.state.label}」的情况说明（{gr.EXPLANATION_MIN_CHARS}到{MAX_CHARS}字）："),
])
