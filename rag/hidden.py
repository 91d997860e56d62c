"""Which parts of an HTML page a reader never sees, by the page's own CSS: its `<style>` rules (top level, or in
an `@media` for every screen) and `style` attributes, resolved in cascade order (`!important`, then specificity,
then source order), parsed with tinycss2 and matched with soupsieve (Beautiful Soup's CSS selectors).

An element is hidden with all it holds when it is `display:none`, transparent (`opacity` near 0), scaled to
nothing, clipped to nothing (`clip: rect(0 0 0 0)`, `clip-path: inset(50%)`), pushed off-screen (absolute or
fixed position, or `text-indent`, far to the left or top), or zero high or wide with its overflow hidden. Its
own text is unseen, while its children may show themselves again, when it is `visibility:hidden`, set in a
`font-size` of 0, or coloured as its background (white on white, or a transparent colour). Stylesheets that
are linked rather than in the page cannot be read and are not resolved."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import tinycss2
from tinycss2.color3 import RGBA, parse_color

_PROPERTIES = frozenset([
    "display", "visibility", "opacity", "font-size", "color", "background", "background-color", "background-image",
    "position", "left", "top", "right", "bottom", "margin-left", "margin-top", "text-indent", "clip", "clip-path",
    "height", "max-height", "width", "max-width", "overflow", "overflow-x", "overflow-y", "transform"])
_FAR = -500.0  # px: an offset this far to the left or top puts text off any screen
_TINY = 1.0  # px: a font, height or width this small shows nothing
_WHITE, _BLACK = RGBA(1.0, 1.0, 1.0, 1.0), RGBA(0.0, 0.0, 0.0, 1.0)
_LENGTH = re.compile(r"^(-?(?:\d+\.?\d*|\.\d+))(px|em|rem|pt|%|vw|vh|)?$")

Style = dict[str, str]


@dataclass(frozen=True)
class _Inherited:
    """What an element passes on to its children: colours, whether its text is invisible or of size 0."""

    color: RGBA = _BLACK
    background: RGBA | None = _WHITE  # None: an image, whose colours are unknown
    invisible: bool = False
    no_size: bool = False


def hidden_parts(soup: Any) -> tuple[set[int], set[int]]:
    """(ids of elements hidden with everything they hold, ids of elements whose own text is unseen)."""
    styles = _cascade(soup)
    gone: set[int] = set()
    unseen: set[int] = set()
    stack: list[tuple[Any, _Inherited]] = [(soup, _Inherited())]
    while stack:
        node, parent = stack.pop()
        for child in getattr(node, "contents", ()):
            if getattr(child, "name", None) is None:
                continue
            style = _legacy(child) | styles.get(id(child), {})
            if _hides_all(style):
                gone.add(id(child))
                continue
            own = _inherit(parent, style)
            if own.invisible or own.no_size or _unreadable(own):
                unseen.add(id(child))
            stack.append((child, own))
    return gone, unseen


def _cascade(soup: Any) -> dict[int, Style]:
    """Each element's declared values of the properties that can hide text, by the cascade."""
    found: dict[int, list[tuple[bool, tuple[int, ...], int, str, str]]] = defaultdict(list)
    order = 0
    for style_tag in soup.find_all("style"):
        for selector, declarations in _rules(style_tag.get_text()):
            try:
                matched = soup.select(tinycss2.serialize(selector).strip())
            except Exception:  # noqa: BLE001  a selector soupsieve cannot match (::before, :hover) styles nothing
                continue
            spec = (0, *_specificity(selector))
            for element in matched:
                for name, value, important in declarations:
                    order += 1
                    found[id(element)].append((important, spec, order, name, value))
    for element in soup.find_all(style=True):
        for name, value, important in _declarations(tinycss2.parse_blocks_contents(str(element["style"]))):
            order += 1
            found[id(element)].append((important, (1, 0, 0, 0), order, name, value))
    resolved: dict[int, Style] = {}
    for key, entries in found.items():
        resolved[key] = {name: value for _, _, _, name, value in sorted(entries)}  # the winner is written last
    return resolved


def _rules(css: str) -> Iterable[tuple[list[Any], list[tuple[str, str, bool]]]]:
    """(one selector's tokens, its hiding-relevant declarations) for each rule that applies on a screen."""
    for rule in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
        if rule.type == "at-rule" and rule.lower_at_keyword == "media" and rule.content is not None:
            if tinycss2.serialize(rule.prelude).strip().lower() in ("all", "screen", "only screen"):
                inner = tinycss2.serialize(rule.content)
                yield from _rules(inner)
            continue
        if rule.type != "qualified-rule":
            continue
        declarations = _declarations(tinycss2.parse_blocks_contents(rule.content))
        if declarations:
            yield from ((selector, declarations) for selector in _selectors(rule.prelude))


def _declarations(nodes: Iterable[Any]) -> list[tuple[str, str, bool]]:
    return [(d.lower_name, tinycss2.serialize(d.value).strip().lower(), bool(d.important))
            for d in nodes if d.type == "declaration" and d.lower_name in _PROPERTIES]


def _selectors(prelude: list[Any]) -> list[list[Any]]:
    """A selector list split at its top-level commas."""
    out: list[list[Any]] = [[]]
    for token in prelude:
        if token.type == "literal" and token.value == ",":
            out.append([])
        else:
            out[-1].append(token)
    return [s for s in out if any(t.type != "whitespace" for t in s)]


def _specificity(tokens: list[Any]) -> tuple[int, int, int]:
    """(ids, classes / attributes / pseudo-classes, types / pseudo-elements) of one selector."""
    ids = classes = types = 0
    before: list[str] = ["", ""]
    for t in tokens:
        mark = t.value if t.type == "literal" else ""
        if t.type == "hash":
            ids += 1
        elif t.type == "[] block":
            classes += 1
        elif t.type in ("ident", "function"):
            if before[-1] == ":":
                types, classes = (types + 1, classes) if before[-2] == ":" else (types, classes + 1)
            elif before[-1] == ".":
                classes += 1
            elif t.type == "ident":
                types += 1
        before = [before[-1], mark]
    return ids, classes, types


def _legacy(tag: Any) -> Style:
    """Presentational attributes: <font color>, bgcolor."""
    style: Style = {}
    if tag.name == "font" and tag.get("color"):
        style["color"] = str(tag["color"]).lower()
    if tag.get("bgcolor"):
        style["background-color"] = str(tag["bgcolor"]).lower()
    return style


def _px(value: str) -> float | None:
    """A length in px (em and rem taken as 16 px, a percentage as itself); None for anything else."""
    m = _LENGTH.match(value.replace("!important", "").strip())
    if not m:
        return None
    number, unit = float(m.group(1)), m.group(2) or "px"
    return number * 16 if unit in ("em", "rem") else number


def _hides_all(style: Style) -> bool:
    get = style.get
    if get("display") == "none" or get("transform", "").replace(" ", "") in ("scale(0)", "scale(0,0)"):
        return True
    opacity = get("opacity", "1").rstrip("%")
    try:
        if float(opacity) / (100 if get("opacity", "").endswith("%") else 1) < 0.05:
            return True
    except ValueError:
        pass
    if get("position") in ("absolute", "fixed"):
        offsets = [_px(get(k, "")) for k in ("left", "top", "margin-left", "margin-top")]
        if any(v is not None and v <= _FAR for v in offsets) or _clipped(get("clip", ""), get("clip-path", "")):
            return True
    indent = _px(get("text-indent", ""))
    if indent is not None and indent <= _FAR:
        return True
    if "hidden" in (get("overflow", ""), get("overflow-x", ""), get("overflow-y", "")) or \
            "clip" in (get("overflow", ""), get("overflow-x", ""), get("overflow-y", "")):
        for size in ("height", "max-height", "width", "max-width"):
            px = _px(get(size, ""))
            if px is not None and px <= _TINY:
                return True
    return False


def _clipped(clip: str, clip_path: str) -> bool:
    if clip.startswith("rect("):
        sizes = [_px(v) for v in re.split(r"[\s,]+", clip[5:].rstrip(")").strip()) if v]
        return all(v is not None and abs(v) <= _TINY for v in sizes)
    m = re.match(r"inset\(\s*(\d+(?:\.\d+)?)%", clip_path)
    return bool(m and float(m.group(1)) >= 50) or bool(re.match(r"circle\(\s*0", clip_path))


def _inherit(parent: _Inherited, style: Style) -> _Inherited:
    own = parent
    visibility = style.get("visibility")
    if visibility:
        own = replace(own, invisible=visibility in ("hidden", "collapse"))
    size = _px(style.get("font-size", "")) if "font-size" in style else None
    if "font-size" in style and style["font-size"] not in ("inherit", "unset"):
        own = replace(own, no_size=size is not None and size < _TINY)
    color = _color(style.get("color", ""))
    if color is not None:
        own = replace(own, color=color)
    background = _background(style)
    if background is not False:
        own = replace(own, background=background)  # type: ignore[arg-type]
    return own


def _color(value: str) -> RGBA | None:
    parsed = parse_color(value) if value else None
    return parsed if isinstance(parsed, RGBA) else None


def _background(style: Style) -> RGBA | None | bool:
    """The colour this element paints behind its text; None for an image; False when it paints nothing."""
    if "url(" in style.get("background", "") or "url(" in style.get("background-image", ""):
        return None
    values = [style.get("background-color", "")] + style.get("background", "").split()
    for value in values:
        color = _color(value)
        if color is not None and color.alpha > 0.5:
            return color
    return False


def _unreadable(state: _Inherited) -> bool:
    """A transparent colour, or one too close to the background behind it to read."""
    if state.color.alpha < 0.05:
        return True
    if state.background is None:
        return False
    return max(abs(a - b) for a, b in zip(state.color[:3], state.background[:3], strict=True)) < 0.08
