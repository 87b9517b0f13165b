"""Draws the 凭证样例 pictures in this folder: mock documents, marked 样例, every detail fictional.

    .venv/bin/python dialogs/assets/samples/make_samples.py

Run once and commit the PNGs; the service only reads them. Needs a CJK font (Debian:
fonts-noto-cjk). Each picture shows the layout of one evidence type and frames, in red, the
number a candidate types when applying (证书编号, 在线验证码, 报告编号).
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
FONT = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
FONT_BOLD = "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"
W, H = 900, 620
INK = (40, 40, 40)
RED = (200, 30, 30)


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    # index 2: the Simplified Chinese face of the collection
    return ImageFont.truetype(FONT_BOLD if bold else FONT, size, index=2)


def base(title: str, subtitle: str, paper: tuple[int, int, int], frame: tuple[int, int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (W, H), paper)
    d = ImageDraw.Draw(img)
    d.rectangle([14, 14, W - 15, H - 15], outline=frame, width=6)
    d.rectangle([26, 26, W - 27, H - 27], outline=frame, width=1)
    d.text((W // 2, 78), title, font=font(38, True), fill=INK, anchor="mm")
    if subtitle:
        d.text((W // 2, 124), subtitle, font=font(20), fill=(90, 90, 90), anchor="mm")
    return img, d


def fields(d: ImageDraw.ImageDraw, rows: list[tuple[str, str]], x: int, y: int, step: int = 42,
           highlight: str | None = None, label_width: int = 150) -> None:
    f = font(24)
    for label, value in rows:
        d.text((x, y), f"{label}：", font=f, fill=(80, 80, 80))
        d.text((x + label_width, y), value, font=f, fill=INK)
        if label == highlight:
            box = d.textbbox((x + label_width, y), value, font=f)
            d.rectangle([box[0] - 10, box[1] - 8, box[2] + 10, box[3] + 8], outline=RED, width=4)
            d.text((box[2] + 22, (box[1] + box[3]) // 2), "← 填写时核对此编号", font=font(20, True), fill=RED,
                   anchor="lm")
        y += step


def watermark(img: Image.Image) -> Image.Image:
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    for cx, cy in ((250, 220), (650, 420), (250, 520), (650, 120)):
        stamp = Image.new("RGBA", (360, 160), (0, 0, 0, 0))
        ImageDraw.Draw(stamp).text((180, 80), "样 例", font=font(96, True), fill=(220, 40, 40, 60), anchor="mm")
        stamp = stamp.rotate(25, expand=True)
        layer.alpha_composite(stamp, (cx - stamp.width // 2, cy - stamp.height // 2))
    d.text((W // 2, H - 48), "样例图片，仅供参考：其中姓名、号码等信息均为虚构", font=font(20, True),
           fill=(200, 30, 30, 255), anchor="mm")
    out = img.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


def save(img: Image.Image, slug: str) -> None:
    path = HERE / f"{slug}.png"
    watermark(img).quantize(colors=48, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path.name}: {path.stat().st_size} bytes")


def pets_certificate(slug: str, level: str) -> None:
    img, d = base(f"全国英语等级考试（PETS）", f"第{level}级 合格证书", (250, 246, 232), (150, 120, 60))
    fields(d, [("姓　　名", "张三"), ("性　　别", "女"), ("证件号码", "1101**********000X"),
               ("级　　别", f"第{level}级（PETS-{'3' if level == '三' else '2'}）"), ("考试时间", "2010年09月"),
               ("证书编号", "0000 0000 0000 0000")], 120, 190, step=48, highlight="证书编号")
    d.text((W - 120, H - 110), "（发证机构印章处）", font=font(20), fill=(150, 120, 60), anchor="rm")
    save(img, slug)


def pets3_score_report() -> None:
    img, d = base("全国英语等级考试（PETS）", "第三级 成绩通知单", (244, 248, 252), (60, 100, 150))
    fields(d, [("姓　　名", "张三"), ("准考证号", "0000000000000"), ("考试时间", "2010年09月"),
               ("笔试成绩", "65"), ("口试成绩", "4"), ("成绩结论", "笔试、口试均合格")], 120, 190, step=48)
    d.rectangle([256, 332, 330, 424], outline=RED, width=4)
    d.text((346, 378), "← 笔试、口试成绩都要拍清楚", font=font(20, True), fill=RED, anchor="lm")
    save(img, "pets3_score_report")


def cet4_certificate() -> None:
    img, d = base("全国大学英语四级考试", "合格证书 / 成绩报告单", (246, 250, 244), (70, 130, 80))
    fields(d, [("姓　　名", "张三"), ("学　　校", "某某大学"), ("考试时间", "2008年06月"), ("总　　分", "478"),
               ("证书编号", "000000000000000")], 120, 190, step=50, highlight="证书编号")
    save(img, "cet4_certificate")


def registration_form() -> None:
    img, d = base("教育部学历证书电子注册备案表", "", (255, 255, 255), (90, 90, 90))
    rows = [("姓　　名", "张三"), ("出生日期", "1980年01月01日"), ("入学时间", "1998年09月01日"),
            ("毕业时间", "2001年07月01日"), ("学历层次", "专科"), ("毕业院校", "某某职业技术学院"),
            ("专业名称", "某某专业"), ("证书编号", "000000000000000000")]
    fields(d, rows, 90, 130, step=40)
    d.text((90, 470), "在线验证码：", font=font(26, True), fill=INK)
    box = d.textbbox((260, 470), "0000 0000 0000", font=font(30, True))
    d.text((260, 468), "0000 0000 0000", font=font(30, True), fill=INK)
    d.rectangle([box[0] - 10, box[1] - 8, box[2] + 10, box[3] + 8], outline=RED, width=4)
    d.text((box[2] + 22, (box[1] + box[3]) // 2), "← 12 位在线验证码", font=font(20, True), fill=RED, anchor="lm")
    d.rectangle([700, 130, 840, 300], outline=(160, 160, 160), width=2)
    d.text((770, 215), "照片", font=font(22), fill=(160, 160, 160), anchor="mm")
    save(img, "degree_registration_form")


def verification_report() -> None:
    img, d = base("中国高等教育学历认证报告", "", (252, 250, 244), (120, 90, 60))
    fields(d, [("报告编号", "0000000000000000"), ("姓　　名", "张三"), ("证书编号", "000000000000000000"),
               ("毕业院校", "某某学院"), ("学历层次", "专科"), ("毕业时间", "1999年07月"),
               ("认证结论", "该学历证书真实有效")], 100, 170, step=48, highlight="报告编号")
    save(img, "degree_verification_report")


def main() -> int:
    if not Path(FONT).exists():
        print(f"needs the CJK font {FONT} (apt-get install fonts-noto-cjk)", file=sys.stderr)
        return 1
    pets_certificate("pets3_certificate", "三")
    pets3_score_report()
    cet4_certificate()
    pets_certificate("pets2_certificate", "二")
    registration_form()
    verification_report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
