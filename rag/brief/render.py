"""The briefing as Markdown, as one self-contained HTML page (no scripts, no external resources) and as JSON."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from rag.brief.model import NOT_IN_SOURCES, Audit, Briefing, Point, _markdown_text
from rag.chunk import as_prose
from rag.cite import attach_marker


def _meta_line(b: Briefing) -> str:
    docs = len({c.doc for c in b.sources})
    shown = {s.heading for s in b.sections} | {d.event for d in b.disagreements}
    events = [e.heading for e in b.events if e.heading and e.heading in shown]
    cited = len(b.sources)
    parts = [f"{docs} source document{'s' if docs != 1 else ''}", f"{cited} cited passage{'s' if cited != 1 else ''}"]
    if len(events) > 1:
        parts.append(f"{len(events)} events kept apart")
    parts.append(f"{b.backend} backend")
    parts.append(b.audit.summary)
    return " · ".join(parts)


def _grouped(points: Sequence[Point]) -> list[tuple[str, list[Point]]]:
    groups: list[tuple[str, list[Point]]] = []
    for p in points:
        if groups and groups[-1][0] == p.aspect:
            groups[-1][1].append(p)
        else:
            groups.append((p.aspect, [p]))
    return groups


def _unmentioned_line(b: Briefing) -> str:
    return "The sources never mention: " + ", ".join(f"“{w}”" for w in b.unmentioned) + "." if b.unmentioned else ""


def render_markdown(b: Briefing) -> str:
    lines = [f"# Briefing: {_markdown_text(b.topic)}", "", f"_{_meta_line(b)}_", ""]
    if b.unmentioned:
        lines += [f"_{_unmentioned_line(b)}_", ""]
    if b.abstained:
        lines += [f"_{NOT_IN_SOURCES}_", ""]
    if b.overview:
        lines += ["## Overview", "", " ".join(p.markdown for p in b.overview), ""]
    for section in b.sections:
        lines += [f"## {_markdown_text(section.heading)}", ""]
        groups = _grouped(section.points)
        for aspect, points in groups:
            if aspect and len(groups) > 1:
                lines += [f"### {aspect}", ""]
            lines += [f"- {p.markdown}" for p in points] + [""]
    if b.disagreements:
        lines += ["## Where the sources disagree", ""]
        event = None
        for d in b.disagreements:
            if d.event and d.event != event:
                lines += [f"### {d.event}", ""]
            event = d.event
            lines += [f"**{d.lead_in}**", ""] + [f"- {p.markdown}" for p in d.claims] + [""]
    lines += ["## Support audit", "", _audit_text(b.audit), ""]
    lines += ["## Sources", ""] if b.sources else []
    for c in b.sources:
        lines += [f"[{c.n}] {_markdown_text(c.title or c.doc)} — {c.doc} — “{_markdown_text(as_prose(c.quote))}”", ""]
    return "\n".join(lines).rstrip() + "\n"


def _audit_text(a: Audit) -> str:
    text = (f"{a.sentences} claim sentences checked against their sources: {a.cited} carry a verified citation, "
            f"{a.dropped} dropped")
    text += f", {a.flagged} flagged." if a.flagged else "."
    if a.invented_markers:
        named = ", ".join(m.strip("[]") for m in a.invented_markers)
        text += f" Removed {len(a.invented_markers)} citation marker(s) naming no source shown (numbers {named})."
    if a.draft_dropped:
        text += f" {a.draft_dropped} draft points failed verification before the merge."
    text += " Headings and lead-ins are structure, not claims, and are not audited."
    return text


_CSS = """
:root { --ink:#1d232b; --muted:#5b6675; --accent:#1f5fae; --rule:#dde3ea; --paper:#ffffff; --mark:#fff4c2; }
* { box-sizing: border-box; }
body { margin:0; background:#f3f5f8; color:var(--ink); font:16px/1.55 Georgia, 'Times New Roman', serif; }
main { max-width: 880px; margin: 32px auto; background: var(--paper); padding: 40px 56px 48px;
       border: 1px solid var(--rule); border-radius: 6px; box-shadow: 0 2px 10px rgba(0,0,0,.05); }
h1 { font: 700 28px/1.25 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 0 6px; }
h2 { font: 650 20px/1.3 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 32px 0 10px;
     padding-bottom: 4px; border-bottom: 2px solid var(--rule); }
h3 { font: 600 15px/1.3 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 18px 0 6px; color: var(--muted);
     text-transform: uppercase; letter-spacing: .04em; }
.meta { color: var(--muted); font: 13px/1.4 system-ui, sans-serif; margin: 0 0 8px; }
ul { padding-left: 22px; margin: 6px 0; } li { margin: 4px 0; }
.lead { font-weight: 600; margin: 16px 0 4px; }
.disagree ul { border-left: 3px solid #d9822b; padding-left: 24px; }
.disagree h3 { text-transform: none; letter-spacing: 0; color: var(--ink); font-size: 16px; margin-top: 22px; }
a.cite { color: var(--accent); text-decoration: none; font: 600 12px/1 system-ui, sans-serif;
         vertical-align: super; padding: 0 1px; }
a.cite:hover, a.cite:focus { text-decoration: underline; outline: none; }
main li, main p { position: relative; }
a.cite .pop { display: none; position: absolute; left: 0; right: 0; margin-top: 1.3em; z-index: 10;
              padding: 10px 12px; background: #fffdf5; color: var(--ink); border: 1px solid #e2d7a8;
              border-radius: 6px; box-shadow: 0 6px 18px rgba(0,0,0,.15); font: italic 14px/1.45 Georgia, serif;
              white-space: normal; vertical-align: baseline; }
a.cite .pop small { display: block; margin-top: 6px; font: normal 12px/1.3 system-ui, sans-serif;
                    color: var(--muted); }
a.cite:hover .pop, a.cite:focus .pop { display: block; }
.flag { color: #b3261e; font: 600 12px system-ui, sans-serif; }
.audit { background: #f0f7f0; border: 1px solid #cfe5cf; border-radius: 6px; padding: 10px 14px;
         font: 14px/1.45 system-ui, sans-serif; }
ol.sources { padding-left: 0; list-style: none; font: 14px/1.45 system-ui, sans-serif; }
ol.sources li { padding: 8px 10px; border-radius: 6px; margin: 2px 0; }
ol.sources li:target { background: var(--mark); outline: 2px solid #e8c860; }
ol.sources .n { font-weight: 700; color: var(--accent); margin-right: 4px; }
ol.sources .file { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12px; color: var(--muted); }
ol.sources q { font-family: Georgia, serif; font-style: italic; }
""".strip()


def render_html(b: Briefing) -> str:
    """One self-contained page: inline CSS, no scripts, no external resources. Each [n] is a link to its source
    entry (#src-n) that shows the quoted passage on hover or focus (and in its title attribute)."""
    esc = html.escape
    by_n = {c.n: c for c in b.sources}

    def cite(n: int) -> str:
        c = by_n[n]
        quote = as_prose(c.quote)
        tip = f"“{quote}” — {c.title or c.doc} ({c.doc})"
        return (f'<a class="cite" href="#src-{n}" title="{esc(tip)}">[{n}]'
                f'<span class="pop" aria-hidden="true">“{esc(quote)}”<small>[{n}] {esc(c.title or c.doc)}'
                f" — {esc(c.doc)}</small></span></a>")

    def point(p: Point) -> str:
        if not p.cites:
            return f'{esc(p.text)} <span class="flag">⚠ no verified source (flagged)</span>'
        marked = attach_marker(p.text, "\x00")  # the markers' place, before the closing punctuation
        before, after = marked.split("\x00", 1)
        return esc(before.rstrip()) + "".join(cite(n) for n in p.cites) + esc(after)

    parts = [f"<h1>Briefing: {esc(b.topic)}</h1>", f'<p class="meta">{esc(_meta_line(b))}</p>']
    if b.unmentioned:
        parts.append(f"<p><em>{esc(_unmentioned_line(b))}</em></p>")
    if b.abstained:
        parts.append(f"<p><em>{esc(NOT_IN_SOURCES)}</em></p>")
    if b.overview:
        parts.append('<section class="overview"><h2>Overview</h2><p>'
                     + " ".join(point(p) for p in b.overview) + "</p></section>")
    for section in b.sections:
        body = [f"<section><h2>{esc(section.heading)}</h2>"]
        groups = _grouped(section.points)
        for aspect, points in groups:
            if aspect and len(groups) > 1:
                body.append(f"<h3>{esc(aspect)}</h3>")
            body.append("<ul>" + "".join(f"<li>{point(p)}</li>" for p in points) + "</ul>")
        parts.append("".join(body) + "</section>")
    if b.disagreements:
        body = ['<section class="disagree"><h2>Where the sources disagree</h2>']
        event = None
        for d in b.disagreements:
            if d.event and d.event != event:
                body.append(f"<h3>{esc(d.event)}</h3>")
            event = d.event
            body.append(f'<p class="lead">{esc(d.lead_in)}</p><ul>'
                        + "".join(f"<li>{point(p)}</li>" for p in d.claims) + "</ul>")
        parts.append("".join(body) + "</section>")
    parts.append(f'<section><h2>Support audit</h2><p class="audit">{esc(_audit_text(b.audit))}</p></section>')
    items = "".join(
        f'<li id="src-{c.n}"><span class="n">[{c.n}]</span> <b>{esc(c.title or c.doc)}</b> — '
        f'<span class="file">{esc(c.doc)}</span> — <q>{esc(as_prose(c.quote))}</q></li>' for c in b.sources)
    parts.append(f'<section><h2>Sources</h2><ol class="sources">{items}</ol></section>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>Briefing: {esc(b.topic)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(parts) + "\n</main>\n</body>\n</html>\n")


def to_json_text(b: Briefing) -> str:
    return json.dumps(b.to_json(), ensure_ascii=False, indent=2)
