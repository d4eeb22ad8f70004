"""Option values in words, in English or 中文: what the explanation shows next to each phrase."""

from __future__ import annotations

from typing import Any

from ..idsizes import ID_SIZES
from .lexicon import COLOURS, COLOURS_ZH

_NAMES_ZH = {
    "preset": "预设",
    "background": "背景",
    "format": "格式",
    "alpha_threshold": "透明度阈值",
    "erode": "边缘收缩",
    "feather": "羽化边缘",
    "max_side": "最长边",
    "mask": "输出蒙版",
    "keep": "保留",
    "id_size": "证件照尺寸",
    "max_kb": "文件大小上限",
    "sheet": "6寸相纸排版",
    "model": "模型",
    "crop": "裁切",
    "crop_margin": "主体四周留白",
    "output_size": "输出尺寸",
    "shadow": "底部阴影",
}
_PRESETS_ZH = {"id-photo": "证件照", "ecommerce": "电商", "marketplace": "电商主图：白底方图", "avatar": "头像"}
_CROPS = {
    "none": ("keep the whole photo", "保留整张图"),
    "subject": ("crop to the subject", "裁到主体"),
    "square": ("the subject centred on a square", "主体居中的正方形图"),
}


def _colour(value: Any, lang: str) -> str:
    text = str(value).lower()
    if text in ("transparent", "none"):
        return "透明" if lang == "zh" else "transparent"
    name = (COLOURS_ZH if lang == "zh" else COLOURS).get(text)
    return f"{name} {text}" if name else text


def describe_value(name: str, value: Any, lang: str = "en") -> str:
    """One option value in words: ``background #438edb`` -> "background ID blue #438edb" / "背景 证件蓝 #438edb"."""
    zh = lang == "zh"
    label = _NAMES_ZH.get(name, name) if zh else name.replace("_", " ")
    if name == "preset":
        size = next((s for s in ID_SIZES.values() if s.preset == value), None)
        if size is not None:
            w, h = size.pixels
            if zh:
                return f"预设 {value}：{size.label_zh}，{w}×{h} 像素，300 dpi"
            return f"preset {value}: {size.label_en}, {w}x{h} px at 300 dpi"
        return f"{label} {value}" + (f"（{_PRESETS_ZH[value]}）" if zh and value in _PRESETS_ZH else "")
    if name == "background":
        return f"{label} {_colour(value, lang)}"
    if name == "refine":
        if zh:
            return "精细边缘（发丝、毛发，较慢）" if value else "不做边缘精修"
        return "edges refined against the photo (hair, fur; slower)" if value else "edges not refined"
    if isinstance(value, bool):
        if zh:
            return f"{label}：{'是' if value else '否'}"
        return f"{label} {'on' if value else 'off'}"
    if name == "keep":
        if zh:
            return "只保留主体人物" if value == "main" else "保留全部"
        return "keep only the main person(s)" if value == "main" else "keep everything"
    if name == "model" and value == "ensemble":
        return "最佳质量（两个模型合成，较慢）" if zh else "best quality (both models combined, slower)"
    if name == "max_kb":
        if zh:
            return f"{label} {value} KB（自动搜索 JPEG 质量）"
        return f"file size at most {value} KB (JPEG quality found by search)"
    if name == "max_side":
        if str(value).lower() in ("none", "0", ""):
            return "保持原尺寸" if zh else "keep the original size"
        return f"{label} {value} {'像素' if zh else 'px'}"
    if name == "crop" and value in _CROPS:
        return _CROPS[value][zh]
    if name == "crop_margin":
        return f"{label} {value}%" if zh else f"{value}% margin around the subject"
    if name == "output_size":
        return f"{label} {value} {'像素' if zh else 'px'}"
    if name == "erode":
        return f"{label} {value} {'像素' if zh else 'px'}"
    return f"{label} {value}"


def describe_values(values: dict[str, Any], lang: str = "en") -> str:
    separator = "，" if lang == "zh" else ", "
    return separator.join(describe_value(name, value, lang) for name, value in values.items())
