"""Office documents for tests: Word (.docx, written by python-docx) and Hangul (.hwpx,
OWPML written here as Hangul writes it: a zip of XML parts), with headings, a table,
header/footer and footnotes where the format has them."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

# a document's content: ("h1"|"h2"|"h3", title), ("p", text) or ("table", [[cell, ...], ...])
Item = tuple[str, object]


def write_docx(
    path: Path, items: list[Item], *, header: str = "", footer: str = "", footnote: str = ""
) -> Path:
    import docx

    document = docx.Document()
    for kind, value in items:
        if kind in ("h1", "h2", "h3"):
            document.add_heading(str(value), level=int(kind[1]))
        elif kind == "p":
            document.add_paragraph(str(value))
        elif kind == "table":
            rows = value  # type: ignore[assignment]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))  # type: ignore[arg-type]
            for r, row in enumerate(rows):  # type: ignore[arg-type]
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
    section = document.sections[0]
    if header:
        section.header.paragraphs[0].text = header
    if footer:
        section.footer.paragraphs[0].text = footer
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(str(path))
    if footnote:
        _add_docx_footnote(path, footnote)
    return path


def _add_docx_footnote(path: Path, text: str) -> None:
    """python-docx writes no footnotes: add word/footnotes.xml as Word does (the separator
    notes -1/0 and one real note), wired into the package."""
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    notes = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<w:footnotes xmlns:w="{w}">'
        '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>'
        '<w:footnote w:type="continuationSeparator" w:id="0"><w:p><w:r>'
        "<w:continuationSeparator/></w:r></w:p></w:footnote>"
        f'<w:footnote w:id="1"><w:p><w:r><w:t>{escape(text)}</w:t></w:r></w:p></w:footnote>'
        "</w:footnotes>"
    )
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    rels = parts["word/_rels/document.xml.rels"].decode()
    rels = rels.replace(
        "</Relationships>",
        '<Relationship Id="rIdFootnotes" Type="http://schemas.openxmlformats.org/'
        'officeDocument/2006/relationships/footnotes" Target="footnotes.xml"/></Relationships>',
    )
    types = (
        parts["[Content_Types].xml"]
        .decode()
        .replace(
            "</Types>",
            '<Override PartName="/word/footnotes.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml"/></Types>',
        )
    )
    parts["word/_rels/document.xml.rels"] = rels.encode()
    parts["[Content_Types].xml"] = types.encode()
    parts["word/footnotes.xml"] = notes.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)


HP = "http://www.hancom.co.kr/hwpml/2011/paragraph"
HS = "http://www.hancom.co.kr/hwpml/2011/section"
HH = "http://www.hancom.co.kr/hwpml/2011/head"
# Hangul's default styles: 0 바탕글 (body), 2-4 개요 1-3 (outline levels: the headings)
STYLES = {"p": 0, "h1": 2, "h2": 3, "h3": 4}


def write_hwpx(
    path: Path,
    sections: list[list[Item]],
    *,
    header: str = "",
    footer: str = "",
    footnote: str = "",
) -> Path:
    """An HWPX with one Contents/sectionN.xml per list of items; the header, footer and
    footnote as Hangul stores them (controls inside the first paragraph's run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/hwp+zip")  # stored, first
        z.writestr("version.xml", '<?xml version="1.0" encoding="UTF-8"?><hv:HCFVersion/>')
        z.writestr("Contents/header.xml", _hwpx_header())
        z.writestr(
            "Contents/content.hpf",
            '<?xml version="1.0" encoding="UTF-8"?><opf:package xmlns:opf="http://www.idpf.org/2007/opf/"/>',
        )
        for n, items in enumerate(sections):
            extras = (header, footer, footnote) if n == 0 else ("", "", "")
            z.writestr(f"Contents/section{n}.xml", _hwpx_section(items, *extras))
    return path


def _hwpx_header() -> str:
    styles = "".join(
        f'<hh:style id="{i}" type="PARA" name="{name}" engName="{eng}"/>'
        for i, name, eng in (
            (0, "바탕글", "Normal"),
            (1, "본문", "Body"),
            (2, "개요 1", "Outline 1"),
            (3, "개요 2", "Outline 2"),
            (4, "개요 3", "Outline 3"),
        )
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><hh:head xmlns:hh="{HH}" version="1.4">'
        f"<hh:refList><hh:styles>{styles}</hh:styles></hh:refList></hh:head>"
    )


def _p(text: str, style: int = 0, inner: str = "") -> str:
    return (
        f'<hp:p paraPrIDRef="0" styleIDRef="{style}"><hp:run charPrIDRef="0">{inner}'
        f"<hp:t>{escape(text)}</hp:t></hp:run></hp:p>"
    )


def _sub(text: str) -> str:
    return f"<hp:subList>{_p(text)}</hp:subList>"


def _hwpx_section(items: list[Item], header: str, footer: str, footnote: str) -> str:
    body = []
    controls = ""
    if header:
        controls += f'<hp:ctrl><hp:header applyPageType="BOTH">{_sub(header)}</hp:header></hp:ctrl>'
    if footer:
        controls += f'<hp:ctrl><hp:footer applyPageType="BOTH">{_sub(footer)}</hp:footer></hp:ctrl>'
    for i, (kind, value) in enumerate(items):
        inner = controls if i == 0 else ""
        if kind == "table":
            rows = "".join(
                "<hp:tr>" + "".join(f"<hp:tc>{_sub(c)}</hp:tc>" for c in row) + "</hp:tr>"
                for row in value  # type: ignore[union-attr]
            )
            body.append(
                f'<hp:p paraPrIDRef="0" styleIDRef="0"><hp:run charPrIDRef="0">{inner}'
                f"<hp:tbl>{rows}</hp:tbl></hp:run></hp:p>"
            )
            continue
        if kind == "p" and footnote:  # the note's mark in the first body paragraph
            inner += f"<hp:ctrl><hp:footNote>{_sub(footnote)}</hp:footNote></hp:ctrl>"
            footnote = ""
        body.append(_p(str(value), STYLES[kind], inner))
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><hs:sec xmlns:hs="{HS}" xmlns:hp="{HP}">'
        + "".join(body)
        + "</hs:sec>"
    )
