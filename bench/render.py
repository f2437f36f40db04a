"""Campaign rendering: CPU per message of `CompiledTemplate.render`, text derived once or not.

Purpose: show what the text template derived at compile time (`campaign/text_template.py`)
saves. A template without a text part gets its text either from a text template derived
once from the HTML template (the default) or, where that derivation is refused, by
rendering the HTML a second time and reading it as text for every contact
(`compile_template(..., derive_text_once=False)` forces the latter: the figure before).
Both are measured in the same run, on one core, for:

- `bench`: bench/campaign.py's template (SUBJECT, HTML, BUTTONS: issue 15's figure);
- `tests`: the unit tests' newsletter (tests/fakes/campaign_mail.py);
- `loops`: a newsletter with a conditional greeting, a list built by a loop, links with
  the contact's address in them and a one-column layout table;
- `refused`: a template whose text cannot be derived (a loop between table rows): both
  columns read per message, the cost of a refusal.

Each round renders `--messages` contacts (distinct names and cities); the figure is the
median over `--runs` rounds of the process CPU time per message (time.process_time).
Output: one line per template, or one JSON object with `--json`.

    .venv/bin/python bench/render.py
    .venv/bin/python bench/render.py --messages 500 --runs 3 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from campaign import BUTTONS, HTML, SUBJECT

from postroom.campaign.buttons import parse_buttons
from postroom.campaign.render import (
    CampaignView,
    CompiledTemplate,
    ContactView,
    ProjectView,
    RenderContext,
    SenderView,
    TemplateSource,
    compile_template,
)

LOOPS_HTML = """<!doctype html>
<html><head><style>h1 { font-size: 22px; }</style></head><body>
<table width="100%"><tr><td>
<h1>{% if contact.vip %}Dear member {{ contact.name }}{% else %}
Hello {{ contact.name }}{% endif %}</h1>
<p>This week in {{ contact.city }}:</p>
<ul>
{% for topic in contact.topics.split(",") %}
  <li><a href="https://events.client.bench.test/{{ topic | trim | urlencode }}?r={{
    contact.email | urlencode }}">{{ topic | trim | title }}</a></li>
{% endfor %}
</ul>
{% if contact.vip %}<p>Members book one day early.</p>{% endif %}
{{ button("programme") }}
<p>Questions? Reply to this message &mdash; a person reads every answer.</p>
</td></tr></table>
</body></html>
"""
REFUSED_HTML = """<html><body><p>Hello {{ contact.name }}</p><table>
{% for topic in contact.topics.split(",") %}<tr><td>{{ topic }}</td></tr>{% endfor %}
</table></body></html>"""


def templates() -> dict[str, TemplateSource]:
    from tests.fakes.campaign_mail import newsletter

    buttons = parse_buttons(BUTTONS.encode(), "buttons.toml")
    return {
        "bench": TemplateSource(SUBJECT, HTML, None, buttons),
        "tests": newsletter(),
        "loops": TemplateSource(SUBJECT, LOOPS_HTML, None, buttons),
        "refused": TemplateSource(SUBJECT, REFUSED_HTML, None, buttons),
    }


def contexts(count: int) -> list[RenderContext]:
    project = ProjectView("bench", {"telegram": "https://t.me/bench_test"})
    sender = SenderView("Bench", "news@client.bench.test")
    campaign = CampaignView(1, "Autumn")
    return [
        RenderContext(
            ContactView(
                email=f"user{index:06d}@bench.test",
                name=f"Reader {index:06d}",
                variables={
                    "city": ("Berlin", "Paris", "Oslo")[index % 3],
                    "vip": "yes" if index % 4 == 0 else "",
                    "topics": "talks, workshop,market" if index % 2 else "talks",
                },
            ),
            project,
            sender,
            campaign,
        )
        for index in range(count)
    ]


def cpu_per_message_us(compiled: CompiledTemplate, batch: list[RenderContext]) -> float:
    started = time.process_time()
    for context in batch:
        compiled.render(context)
    return (time.process_time() - started) / len(batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="contacts per round")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    batch = contexts(args.messages)
    figures = {}
    for name, source in templates().items():
        once = compile_template(source)
        per_message = compile_template(source, derive_text_once=False)
        rounds: dict[str, list[float]] = {"once": [], "per_message": []}
        for _ in range(args.runs):  # alternated, so that a noisy neighbour hits both
            rounds["once"].append(cpu_per_message_us(once, batch))
            rounds["per_message"].append(cpu_per_message_us(per_message, batch))
        medians = {mode: statistics.median(values) for mode, values in rounds.items()}
        figures[name] = {
            "derived_once": once.derived_text is not None,
            "cpu_us_per_message": medians,
            "speedup": medians["per_message"] / medians["once"],
        }
        if not args.json:
            how = "derived once" if once.derived_text is not None else "refused: per message"
            print(
                f"{name:<8} text {how:<21} {medians['once']:>7.1f} µs/msg"
                f"   per message {medians['per_message']:>7.1f} µs/msg"
                f"   x{figures[name]['speedup']:.2f}"
            )
    if args.json:
        print(json.dumps({"messages": args.messages, "runs": args.runs, "templates": figures}))


if __name__ == "__main__":
    main()
