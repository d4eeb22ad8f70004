"""The offline interpreter: a sentence in 中文, English or both -> option values + what each word did.

Three passes, no network:
1. patterns with numbers (hex colours, ``35x45mm``, ``小于200KB``, ``1024px``, ``1080p``) are read by regular
   expressions and cut out of the text;
2. the rest is split into words by jieba (Chinese; the lexicon's phrases are added to its dictionary) and
   matched, longest phrase first, against :mod:`.lexicon` (English words also by their stem);
3. a small grammar combines neighbours within a clause: a strength with what it applies to ("轻微收缩边缘",
   "remove the haze strongly"), a negation with the next negatable phrase ("不要羽化"), "只留" with "人物",
   a passport with its country.

Every word ends up mapped to options, ignored as filler, or listed as not understood.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..cropping import MAX_OUTPUT_SIDE
from ..idsizes import ID_SIZES, find_id_size, find_id_size_by_pixels
from ..options import PRESETS
from .describe import describe_values
from .lexicon import LEXICON, MAX_PHRASE_WORDS, STRENGTH_LEVELS, Entry
from .model import Interpretation, Match

_HAN = re.compile(r"[\u3400-\u9fff]")
_CLAUSE_BREAK = frozenset(",，。.;；!！?？、\n:：()（）[]【】")
_CLAUSE_WORDS = frozenset({"and", "then", "but", "然后", "但是", "并且", "同时", "另外", "再"})
_PUNCTUATION = re.compile(r"^[\W_]+$")


@dataclass
class _Token:
    text: str
    start: int
    entry: Entry | None = None
    used: bool = False


# ---------- pass 1: patterns with numbers ----------

_LIMIT_BEFORE = (
    r"(?:小于|不超过|不大于|低于|少于|最多|最大|控制在|压缩到|压到|限制在|under|below|less than|smaller than|"
    r"at most|max(?:imum)?|no more than|within|up to|<=?|≤)"
)
_LIMIT_AFTER = r"(?:以内|以下|之内|内|or less|max)"
_SIZE_UNIT = r"(?P<unit>kb|kib|k|mb|mib|m|兆|千字节)"
_FILE_SIZE = re.compile(
    rf"(?:(?P<before>{_LIMIT_BEFORE})\s*)?(?P<number>\d+(?:\.\d+)?)\s*{_SIZE_UNIT}(?:\s*(?P<after>{_LIMIT_AFTER}))?"
    r"(?![a-z0-9])",
    re.IGNORECASE,
)
_DIMENSIONS = re.compile(
    r"(?P<w>\d+(?:\.\d+)?)\s*(?:x|×|\*|by)\s*(?P<h>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>mm|毫米|cm|厘米|in|inch|inches|英寸|\"|寸|px|pixels|像素)?"
    r"(?![a-z0-9])",
    re.IGNORECASE,
)
_HEX = re.compile(r"(?<![0-9a-z])#?(?P<hex>[0-9a-f]{6}|(?<=#)[0-9a-f]{3})(?![0-9a-z])", re.IGNORECASE)
_RGB = re.compile(r"rgb\s*\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)", re.IGNORECASE)
_MAX_SIDE_WORDS = (
    r"(?:最长边|长边|最大边长|最大边|最大尺寸|最大宽度|最大|缩小到|缩放到|缩小为|缩放为|调整到|宽度|"
    r"max(?:imum)?(?: side| size| width| dimension)?|longest side|long side|resize(?: it)? to|scale(?: it)? to|"
    r"downscale(?: it)? to|shrink(?: it)? to|width)"
)
_MAX_SIDE = re.compile(
    rf"(?:(?P<word>{_MAX_SIDE_WORDS})\s*(?:of|to|为|是|不超过|:|=)?\s*(?P<n1>\d{{2,5}})\s*(?:px|pixels?|像素)?)"
    r"|(?:(?P<n2>\d{2,5})\s*(?:px|pixels?|像素)(?:\s*(?:wide|宽))?)",
    re.IGNORECASE,
)
_VIDEO_SIZES = {"720p": 1280, "1080p": 1920, "1440p": 2560, "2160p": 3840, "2k": 2560, "4k": 3840, "8k": 7680}
_VIDEO = re.compile(r"(?<![0-9a-z])(?P<name>720p|1080p|1440p|2160p|2k|4k|8k)(?![0-9a-z])", re.IGNORECASE)
_ERODE_NUMBER = re.compile(
    r"(?:腐蚀|收缩|收边|侵蚀|erode|shrink(?: the)?(?: edges?)?(?: by)?|erosion(?: of)?)\s*(?P<n>\d{1,2})\s*"
    r"(?:px|pixels?|像素|个像素)?",
    re.IGNORECASE,
)
_THRESHOLD_NUMBER = re.compile(
    r"(?:透明度阈值|阈值|alpha threshold|threshold)\s*(?:of|to|为|是|=|:)?\s*(?P<n>\d{1,3})", re.IGNORECASE
)

_UNIT_KB = {"kb": 1, "kib": 1, "k": 1, "千字节": 1, "mb": 1024, "mib": 1024, "m": 1024, "兆": 1024}


def _file_size(m: re.Match[str]) -> tuple[dict[str, Any], str] | None:
    unit = m.group("unit").lower()
    bounded = m.group("before") or m.group("after")
    # A bare "k"/"m" is a size only next to a limit word ("小于200k"): "4k" alone is a resolution.
    if unit in ("k", "m") and not bounded:
        return None
    kb = max(1, round(float(m.group("number")) * _UNIT_KB[unit]))
    return {"max_kb": kb}, f"file size at most {kb} KB"


def _dimensions(m: re.Match[str]) -> tuple[dict[str, Any], str] | None:
    w, h = float(m.group("w")), float(m.group("h"))
    unit = (m.group("unit") or "").lower()
    if unit in ("px", "pixels", "像素") or (unit == "" and min(w, h) > 100):
        by_pixels = find_id_size_by_pixels(round(w), round(h))  # "413x579": the pixels of a size at 300 dpi
        if by_pixels:
            return {"id_size": by_pixels.name}, by_pixels.label_en
        return _output_size(w, h)
    if unit in ("cm", "厘米"):
        w, h = w * 10, h * 10
    elif unit in ("in", "inch", "inches", "英寸", '"', "寸"):
        w, h = w * 25.4, h * 25.4
    elif unit == "" and max(w, h) > 10:
        unit = "mm"  # "35x45" with no unit: photo sizes are given in millimetres
    elif unit == "":
        w, h = w * 25.4, h * 25.4  # "2x2": inches
    size = find_id_size(w, h)
    if size is None:
        return None
    return {"id_size": size.name}, size.label_en


def _output_size(w: float, h: float) -> tuple[dict[str, Any], str] | None:
    """Any other size in pixels ("1000x1000 for the shop", "800×600px") is the size every result is made."""
    if w != int(w) or h != int(h) or not all(16 <= v <= MAX_OUTPUT_SIDE for v in (w, h)):
        return None
    size = f"{int(w)}x{int(h)}"
    return {"output_size": size}, f"output {size} px"


def _hex(m: re.Match[str]) -> tuple[dict[str, Any], str] | None:
    text = m.group("hex")
    if len(text) == 3:  # "#fff" is shorthand for "#ffffff"
        text = "".join(c * 2 for c in text)
    if not m.group(0).startswith("#") and not re.search(r"[a-f]", text, re.IGNORECASE):
        return None  # six digits without '#' are a number, not a colour
    return {"background": "#" + text.lower()}, f"background #{text.lower()}"


def _rgb(m: re.Match[str]) -> tuple[dict[str, Any], str] | None:
    values = [int(v) for v in m.groups()]
    if any(v > 255 for v in values):
        return None
    colour = "#{:02x}{:02x}{:02x}".format(*values)
    return {"background": colour}, f"background {colour}"


def _max_side(m: re.Match[str]) -> tuple[dict[str, Any], str] | None:
    n = int(m.group("n1") or m.group("n2"))
    if not 16 <= n <= 16384:
        return None
    return {"max_side": n}, f"long side at most {n} px"


def _video(m: re.Match[str]) -> tuple[dict[str, Any], str] | None:
    n = _VIDEO_SIZES[m.group("name").lower()]
    return {"max_side": n}, f"long side at most {n} px"


def _erode_number(m: re.Match[str]) -> tuple[dict[str, Any], str] | None:
    n = int(m.group("n"))
    return ({"erode": n}, f"erode the edge by {n} px") if n <= 64 else None


def _threshold_number(m: re.Match[str]) -> tuple[dict[str, Any], str] | None:
    n = int(m.group("n"))
    return ({"alpha_threshold": n}, f"alpha threshold {n}") if n <= 255 else None


_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[dict[str, Any], str] | None]], ...] = (
    (_RGB, _rgb),
    (_FILE_SIZE, _file_size),
    (_DIMENSIONS, _dimensions),
    (_ERODE_NUMBER, _erode_number),
    (_THRESHOLD_NUMBER, _threshold_number),
    (_VIDEO, _video),
    (_MAX_SIDE, _max_side),
    (_HEX, _hex),
)


def _read_patterns(text: str) -> tuple[str, list[Match]]:
    """Find the numeric patterns; return the text with them blanked out (positions kept) and their matches."""
    matches: list[Match] = []
    chars = list(text)
    for pattern, read in _PATTERNS:
        for m in pattern.finditer("".join(chars)):
            found = read(m)
            if found is None:
                continue
            values, meaning = found
            matches.append(Match(m.group(0).strip(), values, meaning, m.start()))
            chars[m.start() : m.end()] = " " * (m.end() - m.start())
    return "".join(chars), matches


# ---------- pass 2: words ----------


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any:
    """A private jieba tokenizer that knows the lexicon's Chinese phrases (the global one is left alone)."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    for phrase in LEXICON:
        if _HAN.search(phrase):
            # A high frequency makes the phrase win over jieba's own splits of the same characters.
            tokenizer.add_word(phrase, freq=200_000 + 1_000 * len(phrase))
    return tokenizer


def normalise(text: str) -> str:
    """Full-width -> half-width (NFKC), lower case, curly quotes and apostrophes dropped."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"['’‘`]", "", text).replace("“", '"').replace("”", '"')
    # Hyphenated words read as separate words ("1-inch", "e-commerce"); the lexicon is stored the same way.
    return re.sub(r"(?<=[a-z0-9])-(?=[a-z])", " ", text)


_LATIN_WORD = re.compile(r"[a-z0-9]+(?:[-.][a-z0-9]+)*|\S")


def _split_words(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    for word, start, _ in _tokenizer().tokenize(text):
        if not word.strip():
            continue
        if _HAN.search(word):
            tokens.append(_Token(word, start))
        else:
            # jieba keeps "photo." or "blue," together with its punctuation: split it off.
            tokens.extend(_Token(m.group(0), start + m.start()) for m in _LATIN_WORD.finditer(word))
    return tokens


def _stem_variants(word: str) -> list[str]:
    variants = [word]
    for suffix in ("ing", "ed", "es", "s", "er", "ly"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            variants.append(word[: -len(suffix)])
            variants.append(word[: -len(suffix)] + "e")
    return variants


def _lookup(phrase: str) -> Entry | None:
    for variant in _stem_variants(phrase):
        if variant in LEXICON:
            return LEXICON[variant]
    return None


def _split_han(word: str) -> list[tuple[str, Entry]] | None:
    """Split a Chinese word jieba kept whole ("只留人") into known phrases, longest first; None if it cannot."""
    parts: list[tuple[str, Entry]] = []
    i = 0
    while i < len(word):
        for j in range(len(word), i, -1):
            entry = LEXICON.get(word[i:j])
            if entry is not None:
                parts.append((word[i:j], entry))
                i = j
                break
        else:
            return None
    return parts


def _match_words(tokens: list[_Token]) -> list[_Token]:
    """Longest-match the words against the lexicon; merged phrases become one token with an entry."""
    out: list[_Token] = []
    i = 0
    while i < len(tokens):
        for n in range(min(MAX_PHRASE_WORDS, len(tokens) - i), 0, -1):
            words = [t.text for t in tokens[i : i + n]]
            if n > 1 and any(_HAN.search(w) or _PUNCTUATION.match(w) for w in words):
                continue
            entry = _lookup(" ".join(words))
            if entry is not None:
                out.append(_Token(" ".join(words), tokens[i].start, entry))
                i += n
                break
        else:
            token = tokens[i]
            parts = _split_han(token.text) if _HAN.search(token.text) and len(token.text) > 1 else None
            if parts:
                offset = token.start
                for text, entry in parts:
                    out.append(_Token(text, offset, entry))
                    offset += len(text)
            else:
                out.append(token)
            i += 1
    return out


def _clauses(tokens: list[_Token]) -> list[list[_Token]]:
    clauses: list[list[_Token]] = [[]]
    for token in tokens:
        if token.text in _CLAUSE_BREAK or token.text in _CLAUSE_WORDS or _PUNCTUATION.match(token.text):
            token.used = True  # punctuation and conjunctions carry no option
            clauses.append([])
        else:
            clauses[-1].append(token)
    return [c for c in clauses if c]


# ---------- pass 3: grammar ----------


_LEVELS = ("weak", "medium", "strong")


def _apply_strengths(clause: list[_Token], matches: list[Match]) -> None:
    """Pair each strength with the nearest target in its clause; targets of one option in a clause make one
    match at the strongest level said ("clean up the leftover background aggressively"), medium if none."""
    targets = [t for t in clause if not t.used and t.entry and t.entry.kind == "target"]
    strengths = [t for t in clause if not t.used and t.entry and t.entry.kind == "strength"]
    if not targets:
        # A strength next to a feather/soft word: the edge is soft or not, there is no amount to set.
        if any(t.entry and t.entry.kind == "set" and "feather" in t.entry.value for t in clause):
            for strength in strengths:
                strength.used = True
        return
    assigned: dict[int, list[_Token]] = {id(t): [] for t in targets}
    for strength in strengths:
        nearest = min(targets, key=lambda t: abs(t.start - strength.start))
        assigned[id(nearest)].append(strength)
    for name in dict.fromkeys(t.entry.value for t in targets if t.entry):
        group = [t for t in targets if t.entry and t.entry.value == name]
        said = [s for t in group for s in assigned[id(t)]]
        level = max((s.entry.value for s in said if s.entry), key=_LEVELS.index, default="medium")
        value = STRENGTH_LEVELS[name][level]
        words = sorted(group + said, key=lambda t: t.start)
        label = "edge erosion" if name == "erode" else "alpha threshold"
        text = " ".join(w.text for w in words)
        matches.append(Match(text, {name: value}, f"{label} {value} ({level})", words[0].start))
        for word in words:
            word.used = True


def _apply_negations(clause: list[_Token], matches: list[Match], not_understood: list[_Token]) -> None:
    for index, token in enumerate(clause):
        if token.used or not token.entry or token.entry.kind != "negation":
            continue
        following = [t for t in clause[index + 1 :] if not t.used and t.entry and t.entry.kind != "filler"]
        target = following[0] if following else None
        token.used = True
        if target is None or target.entry is None:
            not_understood.append(token)
            continue
        if target.entry.negated is not None or target.entry.kind == "target":
            target.used = True
            values = target.entry.negated or {target.entry.value: 0}
            matches.append(Match(f"{token.text} {target.text}", dict(values), _describe(values), token.start))
        elif target.entry.kind == "only":
            not_understood.append(token)  # "不只...": the "only" keeps its own rule, the "not" is reported
        else:
            # "不要白底": what to use instead is not said, so neither word is applied.
            target.used = True
            not_understood.extend([token, target])


def _apply_keep_only(clause: list[_Token], matches: list[Match]) -> None:
    for index, token in enumerate(clause):
        if token.used or not token.entry or token.entry.kind != "only":
            continue
        subject = next(
            (t for t in clause[index + 1 :] if not t.used and t.entry and t.entry.kind == "subject"),
            None,
        )
        if subject is None:
            continue
        token.used = subject.used = True
        matches.append(
            Match(f"{token.text} {subject.text}", {"keep": "main"}, "keep only the main person(s)", token.start)
        )


def _apply_id(tokens: list[_Token], matches: list[Match]) -> None:
    """An ID photo: a size (word or dimensions), a passport (with its country), or just "证件照": one preset."""

    def of_kind(kind: str) -> list[_Token]:
        return [t for t in tokens if not t.used and t.entry and t.entry.kind == kind]

    sizes, passports, countries, ids = of_kind("id_size"), of_kind("passport"), of_kind("country"), of_kind("id")
    size_match = next((m for m in matches if "id_size" in m.values), None)
    size: str | None = None
    words: list[_Token] = []
    if size_match is not None:
        size = size_match.values.pop("id_size")
        matches.remove(size_match)
        words.append(_Token(size_match.text, size_match.start))
    elif sizes:
        size = sizes[-1].entry.value  # type: ignore[union-attr]
    words += sizes
    if not (size or passports or ids):
        return  # a country alone ("美国") is no request for an ID photo
    if size is None and (passports or countries):
        size = (countries or passports)[-1].entry.value  # type: ignore[union-attr]
    words += passports + countries + ids
    for word in words:
        word.used = True
    if size is None:
        values: dict[str, Any] = {"preset": "id-photo"}
    else:
        values = {"preset": ID_SIZES[size].preset}
    if size_match is not None and size_match.values:  # keep anything else the pattern said
        matches.append(size_match)
    words.sort(key=lambda w: w.start)
    matches.append(Match(" ".join(w.text for w in words), values, _describe(values), words[0].start))


def _describe(values: dict[str, Any]) -> str:
    return describe_values(values, "en")


def interpret_offline(instruction: str) -> Interpretation:
    """Read an instruction in 中文, English or both into option values and an account of every word.

    Pure: no network, no state. The option values are raw (what :func:`parse_options` takes); later phrases
    win over earlier ones for the same option, and the clash is noted.
    """
    text = normalise(instruction)
    blanked, matches = _read_patterns(text)
    tokens = _match_words(_split_words(blanked))
    not_understood: list[_Token] = []
    for clause in _clauses(tokens):
        _apply_negations(clause, matches, not_understood)
        _apply_keep_only(clause, matches)
        _apply_strengths(clause, matches)
    is_chinese = bool(_HAN.search(text))
    _apply_id(tokens, matches)
    ignored: list[str] = []
    for token in tokens:
        if token.used:
            continue
        entry = token.entry
        if entry is None:
            not_understood.append(token)
        elif entry.kind == "set":
            matches.append(Match(token.text, dict(entry.value), _describe(entry.value), token.start))
        elif entry.kind == "colour":
            values = {"background": entry.value}
            matches.append(Match(token.text, values, _describe(values), token.start))
        elif entry.kind in ("filler", "subject", "only"):
            ignored.append(token.text)
        else:  # a strength with nothing to apply to, a lone country
            not_understood.append(token)
    matches.sort(key=lambda m: m.start)
    options: dict[str, Any] = {}
    notes: list[str] = []
    for match in matches:
        for name, value in match.values.items():
            if name in options and options[name] != value:
                notes.append(f"{name}: {match.text!r} ({value}) replaces an earlier {options[name]}")
            options[name] = value
    if "output_size" in options and ("id_size" in options or "id_size" in PRESETS.get(options.get("preset"), {})):
        # An ID photo's standard size already frames the output ("passport photo 600x800"): keep the ID photo.
        size = options.pop("output_size")
        matches = [m for m in matches if "output_size" not in m.values]
        notes.append(f"{size} px left out: an ID photo size sets the output's size (35x45mm, 2x2in, ...)")
    if options.get("preset") == "id-photo" and "id_size" not in options and "output_size" not in options:
        notes.append("no photo size named: the photo keeps its own size (say 一寸, 二寸, 35x45mm or 2x2in to crop)")
    return Interpretation(
        instruction=instruction,
        options=options,
        matches=matches,
        ignored=ignored,
        not_understood=[t.text for t in sorted(not_understood, key=lambda t: t.start)],
        notes=notes,
        interpreter="offline",
        language="zh" if is_chinese else "en",
    )
