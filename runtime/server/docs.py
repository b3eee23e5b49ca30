"""GET /docs: the OpenAPI document as one self-contained HTML page.

Rendered here, on the server, from the same document /openapi.json serves: no
script, no CDN (the machine may have no network) and nothing to vendor; it works
behind --token too, since the page needs no second request. Each operation shows
its parameters, request body schema and responses.
"""

from __future__ import annotations

import functools
import html
import json
from typing import Any

from .openapi import openapi_document

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .op{border:1px solid #ddd;border-radius:6px;margin:.8rem 0;padding:.2rem .9rem}
.m{display:inline-block;min-width:4.2rem;font-weight:700;font-family:monospace}
.get{color:#1a7f37}.post{color:#0550ae}.put{color:#9a6700}.delete{color:#cf222e}
code,pre{font-family:ui-monospace,monospace;font-size:13px} pre{background:#f6f8fa;padding:.5rem;overflow:auto}
table{border-collapse:collapse} td,th{border-bottom:1px solid #eee;padding:.15rem .6rem;text-align:left}
summary{cursor:pointer;padding:.4rem 0} nav a{margin-right:.8rem}
"""


def _resolve(doc: dict[str, Any], schema: Any, depth: int = 0) -> Any:
    """The schema with local $refs expanded (a few levels), for display."""
    if depth > 6:
        return schema
    if isinstance(schema, dict):
        if "$ref" in schema:
            target: Any = doc
            for part in schema["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return _resolve(doc, target, depth + 1)
        return {k: _resolve(doc, v, depth + 1) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolve(doc, v, depth + 1) for v in schema]
    return schema


def _pre(obj: Any) -> str:
    return f"<pre>{html.escape(json.dumps(obj, indent=2))}</pre>"


def _operation(doc: dict[str, Any], method: str, path: str, op: dict[str, Any]) -> str:
    e = html.escape
    parts = [f'<details class="op" id="{e(op.get("operationId", ""))}"><summary>'
             f'<span class="m {method}">{method.upper()}</span> <code>{e(path)}</code> '
             f'&mdash; {e(op.get("summary", ""))}</summary>']
    if op.get("description"):
        parts.append(f"<p>{e(op['description'])}</p>")
    params = op.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['in'])}</td>"
            f"<td>{'required' if p.get('required') else ''}</td>"
            f"<td><code>{e(json.dumps(p.get('schema', {})))}</code></td>"
            f"<td>{e(p.get('description', ''))}</td></tr>" for p in params)
        parts.append("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th></th>"
                     f"<th>schema</th><th></th></tr>{rows}</table>")
    body = op.get("requestBody")
    if body:
        for ctype, media in body.get("content", {}).items():
            parts.append(f"<h4>Request body <code>{e(ctype)}</code></h4>"
                         + _pre(_resolve(doc, media.get("schema", {}))))
    parts.append("<h4>Responses</h4>")
    for code, resp in op.get("responses", {}).items():
        resp = _resolve(doc, resp)
        schema = (resp.get("content", {}).get("application/json") or {}).get("schema")
        parts.append(f"<p><b>{e(code)}</b> {e(resp.get('description', ''))}</p>")
        if schema is not None and code.startswith("2"):
            parts.append(_pre(schema))
    parts.append("</details>")
    return "".join(parts)


@functools.lru_cache(maxsize=1)
def docs_page() -> str:
    doc = openapi_document()
    info = doc["info"]
    ops = []
    tags: list[str] = []
    by_tag: dict[str, list[str]] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            tag = (op.get("tags") or ["other"])[0]
            if tag not in by_tag:
                tags.append(tag)
            by_tag.setdefault(tag, []).append(_operation(doc, method, path, op))
    for tag in tags:
        ops.append(f'<h2 id="tag-{html.escape(tag)}">{html.escape(tag)}</h2>'
                   + "".join(by_tag[tag]))
    nav = "".join(f'<a href="#tag-{html.escape(t)}">{html.escape(t)}</a>' for t in tags)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(info['title'])}"
            f" API</title><style>{_STYLE}</style></head><body><h1>{html.escape(info['title'])} "
            f"API <small>{html.escape(info['version'])}</small></h1>"
            f"<p>{html.escape(info.get('description', ''))} The machine-readable document is "
            f"<a href='openapi.json'>/openapi.json</a>. Errors are "
            f"<code>{{\"error\": {{\"code\", \"message\"}}}}</code>.</p>"
            f"<nav>{nav}</nav>{''.join(ops)}</body></html>")
