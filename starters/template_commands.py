"""`tidings template list` and `tidings template render`: preview templates without sending."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tidings.activities.rendering import RenderError
from tidings.activities.templates import TemplateCatalog, TemplateRenderer
from tidings.models import Channel, Content, Recipient
from tidings.settings import Settings
from tidings.starters.json_input import read_json_file


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    catalog = TemplateCatalog(settings.templates.directory, settings.templates.default_locale)
    rows = []
    for template_id in catalog.template_ids:
        m = catalog.manifest(template_id)
        rows.append(
            {
                "id": m.template_id,
                "description": m.description,
                "variables": list(m.variables),
                "optional": list(m.optional),
                "locales": sorted(m.locales),
                "unsubscribable": m.unsubscribable,
            }
        )
    print(json.dumps(rows, indent=2, ensure_ascii=False))
    return 0


def _cmd_render(args: argparse.Namespace, settings: Settings) -> int:
    variables: dict[str, Any] = {}
    if args.vars:
        variables = read_json_file(args.vars, "--vars")
        if not isinstance(variables, dict):
            raise ValueError(f"--vars: {args.vars} must hold a JSON object")
    content = Content(template_id=args.template_id, variables=variables)
    catalog = TemplateCatalog(settings.templates.directory, settings.templates.default_locale)
    catalog.check(content)
    renderer = TemplateRenderer(settings.templates.directory, settings.templates.default_locale)
    channels = [Channel(args.channel)] if args.channel else list(Channel)
    output: dict[str, Any] = {}
    for channel in channels:
        try:
            message = renderer.render(content, Recipient(id="preview", locale=args.locale), channel)
        except RenderError as exc:
            raise ValueError(str(exc)) from None
        output[channel.value] = message.model_dump(
            exclude_none=True, exclude_defaults=True, exclude={"platform_overrides", "data"}
        )
    print(json.dumps(output, indent=2, ensure_ascii=False))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    template = subparsers.add_parser("template", help="list and preview templates").add_subparsers(
        dest="template_command", required=True
    )
    template.add_parser("list", help="the templates, their variables and locales").set_defaults(
        sync=_cmd_list
    )
    render = template.add_parser("render", help="print the rendered parts, without sending anything")
    render.add_argument("template_id")
    render.add_argument("--vars", metavar="FILE", help="variables as a JSON object")
    render.add_argument(
        "--locale", default="en", help="e.g. de or pt-BR (falls back to pt, then the default)"
    )
    render.add_argument("--channel", choices=[c.value for c in Channel], help="one channel (default: all)")
    render.set_defaults(sync=_cmd_render)
