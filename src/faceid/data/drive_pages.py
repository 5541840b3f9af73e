"""Google Drive's HTML answers: the "can't scan for viruses" confirmation page to follow,
and a one-line explanation of any other page (quota exceeded, not found)."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from urllib.parse import urljoin

__all__ = ["confirmation", "explain_drive_page"]


class _PageParser(HTMLParser):
    """Forms (action + named inputs), link targets and the title of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1][1][values["name"]] = values.get("value", "")
        elif tag == "a" and "href" in values:
            self.links.append(values["href"])
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def confirmation(page: str, page_url: str) -> tuple[str, dict[str, str] | None] | None:
    """Where Drive's "can't scan for viruses" page sends the download, if it is one.

    Current Drive: a GET form (hidden id, export, confirm, uuid). Older Drive: a link
    carrying `confirm=<token>` (its cookie travels in the session).
    """
    parser = _PageParser()
    parser.feed(page)
    for action, inputs in parser.forms:
        if "confirm" in inputs:
            return urljoin(page_url, html.unescape(action)), inputs
    for href in parser.links:
        if "confirm=" in href:
            return urljoin(page_url, html.unescape(href)), None
    return None


def explain_drive_page(page: str, status: int) -> str:
    parser = _PageParser()
    parser.feed(page)
    title = " ".join(parser.title.split()) or "untitled"
    text = page.lower()
    if "quota" in text or "too many users" in text:
        return (
            f"Google Drive refuses the download: the file's download quota is exceeded "
            f"(HTTP {status}, page {title!r}); Drive resets it after about 24 h"
        )
    if status == 404 or "not found" in text or "does not exist" in text:
        return f"Google Drive says the file was not found (HTTP {status}, page {title!r})"
    return f"Google Drive answered an HTML page instead of the file (HTTP {status}, page {title!r})"
