"""The payload converter every Tidings process uses: pydantic JSON without default values.

Temporal keeps every workflow and activity input and result in history, and the server stores,
replicates and serves each byte of it. The SDK's pydantic converter writes every field, so a
notification's history was mostly `null`, `[]` and `{}` (an immediate one: 4.6 KB, of which
3.2 KB payloads). This converter leaves out fields that equal their default; reading them back
restores the defaults, so the decoded models are equal (tests/test_payloads.py checks the models
that cross Temporal), and payloads written in full by older versions or other clients decode as
before. Values that are not pydantic models serialize exactly as with the SDK's converter.

What operators and other clients read is written in full, every field present: the `status`
query's answer and the workflow result (NotificationState, read by `temporal workflow query` and
`workflow show`, by the Web UI through the codec server, and by clients in other languages), and
update answers (SignalOutcome). The compact ones are what Tidings' own workflow and activities
exchange, and the workflow input, whose JSON Schema (docs/notification-input.schema.json) gives
the defaults of absent fields.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import SchemaSerializer, core_schema
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import CompositePayloadConverter, DataConverter, DefaultPayloadConverter
from temporalio.converter import JSONPlainPayloadConverter as _SdkJSONPlainPayloadConverter

from tidings.models import NotificationState, SignalOutcome

WRITTEN_IN_FULL = (NotificationState, SignalOutcome)


class CompactJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """`json/plain` payloads from pydantic values, fields equal to their default left out."""

    def __init__(self) -> None:
        super().__init__()
        self._compact = SchemaSerializer(core_schema.any_schema())

    def to_payload(self, value: Any) -> Payload | None:
        data = self._compact.to_json(value, exclude_defaults=not isinstance(value, WRITTEN_IN_FULL))
        return Payload(metadata={"encoding": self.encoding.encode()}, data=data)


class CompactPayloadConverter(CompositePayloadConverter):
    """The SDK's default converters, with `CompactJSONPayloadConverter` for JSON."""

    def __init__(self) -> None:
        compact = CompactJSONPayloadConverter()
        super().__init__(
            *(
                compact if isinstance(c, _SdkJSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


compact_data_converter = DataConverter(payload_converter_class=CompactPayloadConverter)
