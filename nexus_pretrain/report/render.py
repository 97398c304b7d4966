"""A result table (report.tables.Table) as GitHub Markdown, a LaTeX booktabs table or CSV."""

from __future__ import annotations

import csv
import io

from nexus_pretrain.report.tables import DOWN, UP, Table


def to_markdown(table: Table) -> str:
    """GitHub Markdown; bold as **x**."""
    lines = []
    if table.layout.title:
        lines += [f"**{table.layout.title}**", ""]
    lines += ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    for row in table.rows:
        lines.append("| " + " | ".join(f"**{c.text}**" if c.bold else c.text for c in row) + " |")
    for note in table.notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    text = text.replace("\\", "\\textbackslash{}")
    for ch in "%&_#$":
        text = text.replace(ch, "\\" + ch)
    return text.replace("±", "$\\pm$").replace(UP, "$\\uparrow$").replace(DOWN, "$\\downarrow$").replace("—", "--")


def to_latex(table: Table) -> str:
    """A booktabs tabular inside a table environment; bold as \\textbf{}."""
    n = len(table.header)
    lines = ["\\begin{table}[t]", "\\centering"]
    if table.layout.title:
        lines.append(f"\\caption{{{_tex(table.layout.title)}}}")
    lines += ["\\small", "\\begin{tabular}{lll" + "c" * (n - 3) + "}", "\\toprule",
              " & ".join(_tex(h) for h in table.header) + " \\\\", "\\midrule"]
    for i, row in enumerate(table.rows):
        if i and row[0].text:
            lines.append("\\midrule")
        lines.append(" & ".join(f"\\textbf{{{_tex(c.text)}}}" if c.bold else _tex(c.text) for c in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"\\par\\footnotesize {_tex(note)}" for note in table.notes]
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Plain cells (no bold), one line per table row."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.header)
    for row in table.rows:
        writer.writerow([c.text for c in row])
    return buf.getvalue()


FORMATS = {"md": to_markdown, "tex": to_latex, "csv": to_csv}
