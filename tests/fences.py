"""Reading what fanout hands the Conductor the way a model would: which text sits inside a
worker-output block and which is fanout speaking."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PREFACE = re.compile(r"^\[fanout\] Each <(worker-output-[0-9a-f]{12})> block below", re.M)
# Anything a reader could take for an opening or closing tag of ours, whatever the case,
# spacing, dash or bracket: what the tests count.
ANY_TAG = re.compile(r"(?i)[<\uff1c\ufe64]\s*/?\s*worker\W{0,3}(output|result)")
WORKER_TAG_NAME = re.compile(r"(?i)worker[-\u2010-\u2015\u2212\uff0d]+(output|result)")


@dataclass
class Fenced:
    tag: str | None
    # (attributes, body) of each block, in order.
    blocks: list[tuple[dict[str, str], str]] = field(default_factory=list)
    # The text with the preface and every block taken out: fanout's own words only.
    outside: str = ""

    def body(self, **attrs: str) -> str:
        (found,) = [body for seen, body in self.blocks if attrs.items() <= seen.items()]
        return found


def read_fenced(text: str) -> Fenced:
    """A block runs from its opening tag to the first ``</tag>`` after it (as a reader who
    trusts the first closing tag would read it); the preface line is fanout's."""
    found = PREFACE.search(text)
    if found is None:
        return Fenced(tag=None, outside=text)
    tag = found.group(1)
    rest = text[: found.start()] + text[text.index("\n", found.start()) + 1 :]
    opening = re.compile(rf"<{re.escape(tag)}((?: [a-z]+=\"[^\"]*\")*)>")
    closing = f"</{tag}>"
    fenced = Fenced(tag=tag)
    outside = []
    pos = 0
    while True:
        match = opening.search(rest, pos)
        if match is None:
            outside.append(rest[pos:])
            break
        outside.append(rest[pos : match.start()])
        end = rest.find(closing, match.end())
        attrs = dict(re.findall(r'([a-z]+)="([^"]*)"', match.group(1)))
        body = rest[match.end() : end if end >= 0 else len(rest)]
        if body.startswith("\n") and body.endswith("\n"):
            body = body[1:-1]
        fenced.blocks.append((attrs, body))
        if end < 0:
            break
        pos = end + len(closing)
    fenced.outside = "".join(outside)
    return fenced
