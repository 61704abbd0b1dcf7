"""The report's stylesheet, inlined into report.html (no external fonts or files: it opens offline).

System font stacks only; numbers use tabular figures so columns line up.
"""

CSS = """
:root {
  --ink: #111827; --muted: #6b7280; --line: #e5e7eb; --soft: #f9fafb; --accent: #4f46e5;
  --best: #047857; --best-bg: #d1fae5; --tie: #1d4ed8; --tie-bg: #dbeafe;
  --worse: #4b5563; --worse-bg: #f3f4f6; --undecided: #92400e; --undecided-bg: #fef3c7;
}
* { box-sizing: border-box; }
html { background: #f3f4f6; }
body {
  margin: 0; color: var(--ink); line-height: 1.5; font-size: 14px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif;
}
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
.wrap { max-width: 1240px; margin: 0 auto; padding: 0 24px; }
header.top { background: linear-gradient(135deg, #1e1b4b, #312e81 60%, #4338ca); color: #fff; padding: 28px 0 22px; }
header.top .brand { text-transform: uppercase; letter-spacing: .12em; font-size: 11px; opacity: .75; }
header.top h1 { margin: 4px 0 14px; font-size: 26px; font-weight: 650; }
dl.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 8px 22px; margin: 0; }
dl.facts div { min-width: 0; }
dl.facts dt { font-size: 11px; text-transform: uppercase; letter-spacing: .08em; opacity: .7; }
dl.facts dd { margin: 0; font-weight: 500; overflow-wrap: anywhere; }
dl.facts.inline { margin: -4px 0 14px; color: var(--ink); }
dl.facts.inline dt { color: var(--muted); opacity: 1; }
nav.toc { background: #fff; border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 5; }
nav.toc a { display: inline-block; padding: 10px 12px; color: var(--muted); text-decoration: none; font-weight: 500; }
nav.toc a:hover { color: var(--accent); }
main { padding: 20px 0 40px; }
section.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px;
  margin: 18px 0; box-shadow: 0 1px 2px rgba(0,0,0,.04); }
h2 { font-size: 18px; margin: 0 0 12px; }
h2 .sub { color: var(--muted); font-weight: 400; font-size: 14px; margin-left: 6px; }
h3 { font-size: 15px; margin: 0 0 8px; }
p.note, .rule { color: var(--muted); font-size: 12.5px; margin: 10px 0 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 7px 9px; border-bottom: 1px solid var(--line); text-align: right; vertical-align: top; white-space: nowrap; }
th { white-space: normal; font-size: 11.5px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); font-weight: 600;
  background: var(--soft); border-bottom: 1px solid #d1d5db; }
th.l, td.l { text-align: left; }
tbody tr:nth-child(even) td { background: #fcfcfd; }
tbody tr:hover td { background: #f5f3ff; }
tr.lead td { font-weight: 600; }
td.score { min-width: 140px; }
td.verdict { white-space: normal; min-width: 150px; }
ul.verdict { margin: 0 0 12px; padding-left: 20px; line-height: 1.5; }
ul.verdict li:first-child { font-weight: 600; }
.pct { display: block; color: var(--muted); font-size: 11.5px; font-weight: 400; }
table.details th, table.details td { font-size: 12.5px; padding: 6px 8px; }
table.details td.l { white-space: normal; }
.bar { display: block; height: 4px; border-radius: 2px; background: #c7d2fe; margin-top: 3px; }
tr.lead .bar { background: var(--accent); }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 3px; margin-right: 7px; vertical-align: -1px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; }
.badge.best { color: var(--best); background: var(--best-bg); }
.badge.tie { color: var(--tie); background: var(--tie-bg); }
.badge.worse { color: var(--worse); background: var(--worse-bg); }
.badge.undecided { color: var(--undecided); background: var(--undecided-bg); }
.how { display: block; color: var(--muted); font-size: 11.5px; font-weight: 400; margin-top: 2px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 10px; background: #fff; }
figure img { display: block; width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 6px; }
figcaption .warn, .skipped li { color: var(--undecided); }
.skipped { margin: 14px 0 0; padding: 10px 14px; background: var(--undecided-bg); border-radius: 8px; font-size: 13px; }
.skipped ul { margin: 4px 0 0; padding-left: 18px; }
article.example { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin: 12px 0; }
article.example h3 .id { color: var(--muted); font-weight: 400; font-size: 12.5px; margin-left: 8px; }
.lbl { display: inline-block; min-width: 78px; font-size: 11px; text-transform: uppercase; letter-spacing: .06em;
  color: var(--muted); font-weight: 600; }
details.input summary { cursor: pointer; color: var(--muted); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
details.input summary .preview { color: var(--ink); }
pre { margin: 6px 0; padding: 8px 10px; background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12.5px; max-height: 320px; overflow-y: auto; }
.refs { margin: 8px 0; }
table.outputs td { white-space: normal; text-align: left; }
table.outputs td.who { width: 180px; white-space: nowrap; font-weight: 600; }
table.outputs td.num { width: 80px; text-align: right; }
table.outputs pre { margin: 0; background: transparent; border: 0; padding: 0; max-height: 200px; }
.empty { color: var(--muted); font-style: italic; }
details.config { margin: 6px 0; }
details.config summary { cursor: pointer; color: var(--accent); }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 10px 0 30px; }
.explorer { position: relative; }
.explorer .controls label { margin-right: 18px; font-weight: 600; color: var(--muted); }
.explorer select { font: inherit; padding: 3px 6px; border: 1px solid var(--line); border-radius: 6px; }
.explorer .filters { margin: 10px 0 6px; display: flex; flex-wrap: wrap; gap: 4px 14px; }
.explorer .filter { cursor: pointer; user-select: none; }
.explorer .filter input { margin: 0 4px 0 0; vertical-align: middle; }
.explorer svg { display: block; max-width: 900px; border: 1px solid var(--line); border-radius: 8px; background: #fff; }
.explorer .gridline { stroke: var(--line); }
.explorer .tick { fill: var(--muted); font-size: 11px; }
.explorer .axis-x, .explorer .axis-y { fill: var(--ink); font-size: 12.5px; font-weight: 600; }
.explorer .front { fill: none; stroke: var(--muted); stroke-dasharray: 4 3; }
.explorer .pt { stroke-width: 2; cursor: pointer; }
.explorer .top-ring { stroke-width: 1.5; stroke-dasharray: 3 2; pointer-events: none; }
.explorer .tip { position: absolute; z-index: 3; pointer-events: none; background: var(--ink); color: #fff;
  padding: 6px 9px; border-radius: 6px; font-size: 12px; line-height: 1.4; max-width: 360px; }
.explorer .tip[hidden] { display: none; }
"""
