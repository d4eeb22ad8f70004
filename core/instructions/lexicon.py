"""The offline interpreter's vocabulary: every word or phrase it knows, in 中文 and English, and what it means.

Data only. A phrase is lower-case; English phrases of several words are written with single spaces and match
consecutive words. Chinese phrases are also added to the tokenizer's dictionary so they come out as one word.

Kinds of entry:
- ``set``: sets options directly (``value`` is a dict of option values);
- ``colour``: a background colour (``value`` is ``#rrggbb`` or ``transparent``);
- ``id_size``: a standard photo size (``value`` names an entry of ``ID_SIZES``);
- ``id``: "an ID photo" without a size; ``passport``: a passport/visa photo (``value`` the default size);
- ``country``: which passport size a country uses (``value`` a size name);
- ``target``: something a strength applies to (``erode`` or ``alpha_threshold``);
- ``strength``: ``weak``, ``medium`` or ``strong``;
- ``negation``: turns the next negatable entry around;
- ``only`` + ``subject``: "keep only the person";
- ``filler``: understood, sets nothing (articles, "photo", "make", the task itself).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    kind: str
    value: Any = None
    # What "no <this>" means, for the entries a negation can apply to.
    negated: dict[str, Any] | None = None


# Colours a user names. The ID colours are the page's swatches: ID blue and ID red are the shades photo
# studios use for Chinese ID photos.
ID_BLUE = "#438edb"
ID_RED = "#d9262e"
COLOURS: dict[str, str] = {
    "#ffffff": "white",
    ID_BLUE: "ID blue",
    ID_RED: "ID red",
    "#000000": "black",
    "#808080": "grey",
    "#d3d3d3": "light grey",
    "#404040": "dark grey",
    "#1f3a93": "dark blue",
    "#a3c8f0": "light blue",
    "#00b050": "green",
    "#00ff00": "green-screen green",
    "#ffd700": "yellow",
    "#ffc0cb": "pink",
    "#f5f5dc": "beige",
    "#800080": "purple",
    "#ffa500": "orange",
}
COLOURS_ZH: dict[str, str] = {
    "#ffffff": "白色",
    ID_BLUE: "证件蓝",
    ID_RED: "证件红",
    "#000000": "黑色",
    "#808080": "灰色",
    "#d3d3d3": "浅灰色",
    "#404040": "深灰色",
    "#1f3a93": "深蓝色",
    "#a3c8f0": "浅蓝色",
    "#00b050": "绿色",
    "#00ff00": "绿幕绿",
    "#ffd700": "黄色",
    "#ffc0cb": "粉色",
    "#f5f5dc": "米色",
    "#800080": "紫色",
    "#ffa500": "橙色",
}

_COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "#ffffff": ("白", "白色", "纯白", "纯白色", "白底", "白色底", "白背景", "white", "pure white", "white-background"),
    ID_BLUE: ("蓝", "蓝色", "蓝底", "蓝色底", "蓝背景", "证件蓝", "blue", "blue-background"),
    ID_RED: ("红", "红色", "红底", "红色底", "红背景", "证件红", "red", "red-background"),
    "#000000": ("黑", "黑色", "黑底", "黑色底", "纯黑", "black"),
    "#808080": ("灰", "灰色", "灰底", "grey", "gray"),
    "#d3d3d3": ("浅灰", "浅灰色", "浅灰底", "淡灰", "淡灰色", "light grey", "light gray", "lightgrey", "lightgray"),
    "#404040": ("深灰", "深灰色", "dark grey", "dark gray"),
    "#1f3a93": ("深蓝", "深蓝色", "藏青", "藏青色", "藏蓝", "navy", "navy blue", "dark blue"),
    "#a3c8f0": ("浅蓝", "浅蓝色", "天蓝", "天蓝色", "淡蓝", "淡蓝色", "light blue", "sky blue"),
    "#00b050": ("绿", "绿色", "绿底", "green"),
    "#00ff00": ("绿幕", "green screen", "greenscreen", "chroma green"),
    "#ffd700": ("黄", "黄色", "黄底", "yellow"),
    "#ffc0cb": ("粉", "粉色", "粉红", "粉红色", "pink"),
    "#f5f5dc": ("米色", "米白", "米白色", "beige", "cream", "off-white", "off white"),
    "#800080": ("紫", "紫色", "purple", "violet"),
    "#ffa500": ("橙", "橙色", "橘色", "orange"),
    "transparent": (
        "透明",
        "透明背景",
        "透明底",
        "无背景",
        "不要背景",
        "没有背景",
        "transparent",
        "transparency",
        "no background",
        "without background",
        "without a background",
        "see-through",
        "alpha",
    ),
}

_ID_SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "1inch": ("一寸", "1寸", "一寸照", "1寸照", "one inch", "1 inch", "1-inch", "one-inch"),
    "small-1inch": ("小一寸", "小1寸", "small one inch", "small 1 inch", "small 1-inch"),
    "large-1inch": ("大一寸", "大1寸", "large one inch", "large 1 inch", "large 1-inch"),
    "2inch": ("二寸", "两寸", "2寸", "二寸照", "两寸照", "2寸照", "two inch", "2 inch", "2-inch", "two-inch"),
    "small-2inch": ("小二寸", "小两寸", "小2寸", "small two inch", "small 2 inch", "small 2-inch"),
    "large-2inch": ("大二寸", "大两寸", "大2寸", "large two inch", "large 2 inch", "large 2-inch"),
    "2x2in": ("2x2", "2x2in", "2x2inch", "two by two", "2 by 2"),
}

_SETS: dict[tuple[str, ...], dict[str, Any]] = {
    # Formats.
    ("png", "png格式", "png图", "png图片", "png文件"): {"format": "png"},
    ("jpg", "jpeg", "jpg格式", "jpeg格式", "jpg图片", "jpeg图片"): {"format": "jpeg"},
    ("webp", "webp格式"): {"format": "webp"},
    # Purposes and presets.
    ("电商", "电商图", "商品图", "产品图", "商品", "产品", "淘宝", "京东", "拼多多"): {"preset": "ecommerce"},
    ("ecommerce", "e-commerce", "product", "product photo", "product shot", "shop", "store", "catalog"): {
        "preset": "ecommerce"
    },
    ("catalogue", "etsy", "shopify", "online store", "listing"): {"preset": "ecommerce"},
    # Marketplace main images: the product centred on a pure white square (Amazon, Taobao's 800 x 800 主图).
    ("电商主图", "主图", "商品主图", "亚马逊", "amazon", "main image", "hero image", "marketplace", "ebay"): {
        "preset": "marketplace"
    },
    # The canvas around the subject.
    ("方图", "正方形", "方形", "正方形图", "1:1", "square", "square image", "square crop"): {"crop": "square"},
    ("裁到主体", "裁剪到主体", "紧贴主体", "去掉空白", "去除空白", "去掉多余空白", "crop to the subject"): {
        "crop": "subject"
    },
    ("crop to subject", "crop to the product", "tight crop", "no empty space", "remove empty space"): {
        "crop": "subject"
    },
    ("头像", "微信头像", "个人头像", "社交头像", "avatar", "profile picture", "profile photo", "pfp"): {
        "preset": "avatar"
    },
    ("headshot", "profile pic", "社交媒体头像"): {"preset": "avatar"},
    # Slides and posters are composed elsewhere: a transparent PNG drops onto any slide colour.
    ("ppt", "幻灯片", "演示", "演示文稿", "课件", "keynote", "slide", "slides", "presentation", "powerpoint"): {
        "format": "png",
        "background": "transparent",
    },
    ("海报", "宣传图", "宣传单", "横幅", "poster", "flyer", "banner", "collage", "拼贴"): {
        "format": "png",
        "background": "transparent",
        "feather": True,
    },
    # Edges.
    ("羽化", "柔和", "柔化", "柔边", "软边", "平滑", "顺滑", "自然", "边缘柔和", "柔和边缘", "羽化边缘"): {
        "feather": True
    },
    ("feather", "feathered", "feathering", "soft", "soften", "softer", "smooth", "smoother", "natural"): {
        "feather": True
    },
    ("soft edge", "soft edges", "smooth edges", "softened"): {"feather": True},
    ("锐利", "清晰", "硬边", "利落", "干脆", "锐利边缘", "清晰边缘", "边缘锐利", "边缘清晰", "硬", "太硬", "生硬"): {
        "feather": False
    },
    ("sharp", "sharper", "crisp", "crisper", "hard edge", "hard edges", "sharp edges", "crisp edges"): {
        "feather": False
    },
    # Fine hair: keep every faint strand (no threshold, no erosion) and solve the edge against the photo.
    ("保留发丝", "保留头发", "发丝", "头发丝", "保留细节", "细节", "hair", "hair detail", "fine hair", "strands"): {
        "alpha_threshold": 0,
        "erode": 0,
        "refine": True,
    },
    ("wisps", "flyaways", "flyaway hair", "fine detail", "details"): {"alpha_threshold": 0, "erode": 0, "refine": True},
    ("毛发", "毛绒", "抠发丝", "精细边缘", "边缘精细", "fur", "furry", "fluffy", "plush"): {"refine": True},
    ("refine", "refined", "refine edges", "refined edges", "edge refinement", "detailed edges"): {"refine": True},
    # Fur is what the refinement is for: pets and plush toys.
    ("毛绒玩具", "宠物", "猫咪", "狗狗", "plush toy", "teddy", "teddy bear", "pet", "pets", "dog", "cat"): {
        "refine": True
    },
    # A floor shadow under the subject (catalogue photos).
    ("阴影", "投影", "加阴影", "带阴影", "底部阴影", "地面阴影", "落地阴影"): {"shadow": True},
    ("shadow", "shadows", "drop shadow", "floor shadow", "cast shadow", "with shadow", "with a shadow"): {
        "shadow": True
    },
    # Masks.
    ("蒙版", "遮罩", "掩膜", "掩码", "alpha通道", "透明通道", "mask", "masks", "alpha mask", "matte"): {"mask": True},
    # Clutter: keep only the main person(s).
    ("杂物", "去掉杂物", "去除杂物", "去杂物", "路人", "去掉路人", "去除路人", "杂乱", "多余物体", "主体"): {
        "keep": "main"
    },
    ("其他人", "其他人物", "别人", "旁人", "其它人", "多余的人"): {"keep": "main"},
    ("clutter", "passers-by", "passersby", "bystanders", "stray objects", "other people", "main subject"): {
        "keep": "main"
    },
    ("main person", "main people", "other objects", "distractions"): {"keep": "main"},
    # Quality over speed: both networks (the ``ensemble`` model).
    ("最佳质量", "最高质量", "高质量", "质量最好", "效果最好", "最好效果", "最精细", "精细抠图", "精细"): {
        "model": "ensemble"
    },
    ("best quality", "highest quality", "high quality", "high-quality", "best result", "best results"): {
        "model": "ensemble"
    },
    ("most accurate", "maximum quality", "max quality", "precise", "accurate"): {"model": "ensemble"},
    # A print sheet of ID photos on 6-inch (4x6 in) paper.
    ("排版", "冲印", "打印", "相纸", "6寸", "六寸", "6寸相纸", "六寸相纸", "排版打印", "冲洗"): {"sheet": True},
    ("print sheet", "print layout", "4x6", "6x4", "4x6 paper", "6 inch paper", "photo sheet"): {"sheet": True},
    # Sizes without numbers.
    ("高清", "原图", "原尺寸", "全尺寸", "full size", "full resolution", "original size", "full-size"): {
        "max_side": "none"
    },
    ("缩略图", "thumbnail", "thumb"): {"max_side": 512},
}

# Only the yes/no entries can be negated ("不要羽化", "边缘不要太硬"); "no <colour>" stays not understood.
_NEGATABLE = ("sheet", "feather", "mask", "keep", "shadow")


def _negated(values: dict[str, Any]) -> dict[str, Any] | None:
    if not any(name in _NEGATABLE for name in values):
        return None
    flipped: dict[str, Any] = {}
    for name, value in values.items():
        if name == "keep":
            flipped[name] = "all" if value == "main" else "main"
        elif isinstance(value, bool):
            flipped[name] = not value
    return flipped


_TARGETS: dict[str, tuple[str, ...]] = {
    "erode": (
        "毛边",
        "白边",
        "杂边",
        "黑边",
        "边缘收缩",
        "收缩边缘",
        "收缩",
        "收边",
        "收紧",
        "腐蚀",
        "侵蚀",
        "修边",
        "fringe",
        "fringes",
        "fringing",
        "halo",
        "halos",
        "erode",
        "erosion",
        "shrink",
        "tighten",
        "trim",
        "choke",
        "white edge",
        "white edges",
        "white fringe",
        "white fringes",
        "white halo",
        "dark fringe",
        "colour fringe",
        "color fringe",
        "outline",
    ),
    "alpha_threshold": (
        "残影",
        "杂色",
        "半透明",
        "残留",
        "背景残留",
        "阈值",
        "透明度阈值",
        "雾",
        "灰雾",
        "干净",
        "haze",
        "hazy",
        "threshold",
        "residue",
        "leftover",
        "leftovers",
        "remnants",
        "ghosting",
        "ghost",
        "semi-transparent",
        "clean",
        "cleaner",
        "cleanup",
    ),
}

_STRENGTHS: dict[str, tuple[str, ...]] = {
    "weak": (
        "轻微",
        "稍微",
        "稍",
        "略",
        "略微",
        "一点",
        "一点点",
        "有点",
        "轻",
        "轻度",
        "少量",
        "少许",
        "slightly",
        "slight",
        "a little",
        "a bit",
        "little",
        "light",
        "lightly",
        "gentle",
        "gently",
        "mild",
        "mildly",
        "subtle",
    ),
    "medium": ("适度", "适当", "中等", "moderate", "moderately", "medium", "normal"),
    "strong": (
        "强力",
        "强",
        "强烈",
        "彻底",
        "大幅",
        "大量",
        "很多",
        "多",
        "更多",
        "狠",
        "用力",
        "strong",
        "strongly",
        "aggressive",
        "aggressively",
        "hard",
        "heavy",
        "heavily",
        "more",
        "a lot",
        "lots",
        "much",
        "thoroughly",
        "completely",
        "very",
    ),
}
# What a strength means for each target (pixels of erosion; alpha threshold on 0-255).
STRENGTH_LEVELS: dict[str, dict[str, int]] = {
    "erode": {"weak": 1, "medium": 2, "strong": 4},
    "alpha_threshold": {"weak": 12, "medium": 24, "strong": 48},
}

_OTHER: dict[str, tuple[tuple[str, ...], Any]] = {
    "id": (
        (
            "证件照",
            "证件",
            "证件相",
            "证件照片",
            "登记照",
            "标准照",
            "身份证照",
            "身份证",
            "工作证",
            "驾照",
            "驾驶证",
            "简历照",
            "id photo",
            "id photos",
            "id-photo",
            "id picture",
            "id",
            "identification photo",
            "id card",
            "resume photo",
            "cv photo",
            "resume",
            "cv",
            "简历",
            "简历照",
        ),
        None,
    ),
    "passport": (("护照", "护照照", "护照照片", "签证", "签证照", "出入境"), "33x48"),
    "passport_en": (("passport", "passport photo", "visa", "visa photo"), "35x45"),
    "country": (
        ("美国", "美签", "us", "u.s.", "usa", "american", "america", "united states"),
        "2x2in",
    ),
    "country_icao": (
        ("申根", "欧洲", "欧盟", "英国", "德国", "法国", "schengen", "eu", "europe", "european", "uk", "british"),
        "35x45",
    ),
    "country_cn": (("中国", "国内", "china", "chinese"), "33x48"),
    "negation": (
        (
            "不",
            "不要",
            "别",
            "无",
            "无需",
            "不用",
            "不需要",
            "不必",
            "关闭",
            "no",
            "not",
            "without",
            "dont",
            "don't",
            "never",
            "disable",
            "skip",
        ),
        None,
    ),
    "only": (
        ("只", "只留", "只保留", "仅", "仅留", "仅保留", "只要", "保留", "留下", "only", "just", "keep only", "solely"),
        None,
    ),
    "subject": (
        ("人", "人物", "人像", "主角", "本人", "人体", "person", "people", "subject", "me", "myself", "the person"),
        None,
    ),
}

FILLER_WORDS: tuple[str, ...] = (
    # 中文
    "把",
    "将",
    "这张",
    "这个",
    "这",
    "张",
    "那张",
    "照片",
    "图片",
    "图",
    "相片",
    "图像",
    "换成",
    "换",
    "改成",
    "改为",
    "变成",
    "设为",
    "设置",
    "设置为",
    "成",
    "为",
    "的",
    "了",
    "一下",
    "请",
    "帮",
    "我",
    "帮我",
    "给",
    "要",
    "需要",
    "想",
    "想要",
    "做",
    "做成",
    "弄成",
    "生成",
    "制作",
    "一张",
    "用",
    "用于",
    "用来",
    "作为",
    "和",
    "与",
    "及",
    "并",
    "且",
    "然后",
    "再",
    "格式",
    "输出",
    "导出",
    "保存",
    "上",
    "里",
    "中",
    "在",
    "到",
    "个",
    "吧",
    "呢",
    "啊",
    "一个",
    "去掉",
    "去除",
    "删除",
    "移除",
    "抠图",
    "抠",
    "抠出",
    "背景",
    "底色",
    "底",
    "背景色",
    "颜色",
    "边缘",
    "边",
    "效果",
    "处理",
    "一些",
    "些",
    "得",
    "地",
    "更",
    "比较",
    "尽量",
    "照",
    "拍",
    "所有",
    "其他",
    "其它",
    "东西",
    "物体",
    "尺寸",
    "大小",
    "标准",
    "规格",
    "可以",
    "谢谢",
    "加",
    "加上",
    "里面",
    "的话",
    "使用",
    "适合",
    "就",
    "也",
    "都",
    "吗",
    "一",
    "文件",
    "一份",
    "这是",
    "抠出来",
    "出来",
    "来",
    "放到",
    "放在",
    "放",
    "换个",
    "弄",
    "太",
    "them",
    "him",
    "her",
    "he",
    "she",
    "they",
    "too",
    # English
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "my",
    "i",
    "please",
    "can",
    "could",
    "you",
    "would",
    "make",
    "turn",
    "it",
    "its",
    "into",
    "to",
    "for",
    "with",
    "and",
    "of",
    "on",
    "in",
    "as",
    "be",
    "is",
    "are",
    "photo",
    "photos",
    "picture",
    "pictures",
    "image",
    "images",
    "pic",
    "shot",
    "version",
    "use",
    "using",
    "want",
    "need",
    "give",
    "save",
    "export",
    "output",
    "file",
    "convert",
    "change",
    "set",
    "put",
    "remove",
    "removed",
    "cut",
    "out",
    "background",
    "backdrop",
    "bg",
    "colour",
    "color",
    "edge",
    "edges",
    "format",
    "keep",
    "get",
    "rid",
    "delete",
    "drop",
    "up",
    "some",
    "bit",
    "so",
    "then",
    "also",
    "plus",
    "size",
    "standard",
    "style",
    "like",
    "looking",
    "look",
    "all",
    "any",
    "from",
    "at",
    "by",
    "thanks",
    "thank",
    "me",
    "should",
    "have",
    "has",
    "do",
    "new",
    "other",
    "objects",
    "stuff",
    "things",
    "around",
    "behind",
    "suitable",
    "ready",
    "just",
)


def build_lexicon() -> dict[str, Entry]:
    """Every known phrase (lower-case) -> its :class:`Entry`. Later tables never overwrite earlier ones."""
    lexicon: dict[str, Entry] = {}

    def add(phrase: str, entry: Entry) -> None:
        # Hyphens between words are read as spaces ("e-commerce" == "e commerce"), as the tokenizer sees them.
        lexicon.setdefault(re.sub(r"(?<=[a-z0-9])-(?=[a-z0-9])", " ", phrase.lower()), entry)

    for value, words in _COLOUR_WORDS.items():
        for word in words:
            add(word, Entry("colour", value))
    for size, words in _ID_SIZE_WORDS.items():
        for word in words:
            add(word, Entry("id_size", size))
    for words, values in _SETS.items():
        negated = _negated(values)
        for word in words:
            add(word, Entry("set", values, negated))
    for target, words in _TARGETS.items():
        for word in words:
            add(word, Entry("target", target))
    for strength, words in _STRENGTHS.items():
        for word in words:
            add(word, Entry("strength", strength))
    for kind, (words, value) in _OTHER.items():
        for word in words:
            add(word, Entry(kind.split("_")[0], value))
    for word in FILLER_WORDS:
        add(word, Entry("filler"))
    return lexicon


LEXICON: dict[str, Entry] = build_lexicon()
# The longest phrase in words, for the longest-match scan.
MAX_PHRASE_WORDS = max(len(phrase.split(" ")) for phrase in LEXICON)
