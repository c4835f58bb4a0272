"""The event catalogue (docs/events.md), generated from events_schema by ``python -m analytics.catalogue``.

Every type on the stream with its version and upcast history, every field with its type and meaning, the
AWS events we consume with the fields we read, partition keys, the envelope and the versioning policy.
Pure: it renders text from the models; a test keeps docs/events.md equal to its output.
"""

from __future__ import annotations

import inspect
import json
import sys
import types
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, StringConstraints
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from analytics.catalogue_notes import COMMON, NOTES, WRITTEN_BY
from events_schema import aws, bounds
from events_schema.envelope import Envelope, EventType, Subject, make_envelope
from events_schema.events import REGISTRY, NodeStateChanged
from events_schema.partition import partition_key_for
from events_schema.rules import ingest_rules

REGENERATE = "python -m analytics.catalogue > docs/events.md"
EXAMPLE_CLUSTER = "arn:aws:ecs:REGION:ACCOUNT:cluster/CLUSTER"
AWS_EVENTS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    aws.TASK_STATE_CHANGE: (aws.TaskStateChange, aws.TaskDetail),
    aws.CONTAINER_INSTANCE_STATE_CHANGE: (aws.ContainerInstanceStateChange, aws.ContainerInstanceDetail),
    aws.CONTAINER_INSTANCE_HEALTH_CHANGE: (aws.ContainerInstanceHealthChange, aws.ContainerInstanceHealthDetail),
    aws.AWS_HEALTH_EVENT: (aws.AwsHealthEvent, aws.AwsHealthDetail),
    aws.EC2_INSTANCE_STATE_CHANGE: (aws.Ec2InstanceStateChange, aws.Ec2InstanceStateDetail),
}
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", datetime: "time (ISO 8601, UTC)"}


class Undocumented(LookupError):
    """A field with no description anywhere: add ``Field(description=...)`` or a line in catalogue_notes.py."""


# --- fields ---------------------------------------------------------------------------------------


def anchor(model: type[BaseModel]) -> str:
    return f"type-{model.__name__.lower()}"


def type_text(annotation: Any) -> str:
    """A field's type in words, with links to nested models."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_text(args[0]) + _marks(args[1:])
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        present = [type_text(a) for a in args if a is not type(None)]
        return " or ".join(present) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {type_text(args[0])}"
    if origin is dict:
        return f"object of {type_text(args[0])} to {type_text(args[1])}"
    if annotation is Any:
        return "any JSON"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{anchor(annotation)})"
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(info: FieldInfo) -> str:
    return _marks(info.metadata)


def _marks(metadata: Iterable[Any]) -> str:
    """A field's bounds in words: ``(>= 0, < 10^38)``, ``(1..255 characters)``."""
    marks: list[str] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            marks += [mark for inner in item.metadata if (mark := _mark(inner))]
        elif mark := _mark(item):
            marks.append(mark)
    return f" ({', '.join(marks)})" if marks else ""


def _mark(item: Any) -> str:
    if isinstance(item, Ge | Gt | Le | Lt):
        op, value = {Ge: (">=", "ge"), Gt: (">", "gt"), Le: ("<=", "le"), Lt: ("<", "lt")}[type(item)]
        return f"{op} {_limit(getattr(item, value))}"
    if isinstance(item, StringConstraints) and item.max_length is not None:
        return f"{item.min_length or 0}..{item.max_length} characters"
    return ""


def _limit(value: Any) -> str:
    """10^38 rather than 39 digits; a date rather than a midnight time."""
    if isinstance(value, int) and abs(value) >= 10**6 and str(abs(value)).rstrip("0") == "1":
        return f"{'-' if value < 0 else ''}10^{len(str(abs(value))) - 1}"
    if isinstance(value, datetime) and value.time() == datetime.min.time():
        return f"{value.date().isoformat()} UTC"
    return str(value)


def presence(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return f"optional, default `{_json(info.default_factory())}`"  # type: ignore[call-arg]
    if info.default is PydanticUndefined:
        return "optional"
    return f"optional, default `{_json(info.default)}`"


def _json(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    return json.dumps(value, separators=(",", ":"))


def description(owner: str, name: str, info: FieldInfo) -> str:
    text = info.description or NOTES.get(f"{owner}.{name}") or COMMON.get(name)
    if not text:
        raise Undocumented(f"{owner}.{name} has no description: give it Field(description=...) in the model "
                           f"or a line '{owner}.{name}' in analytics/catalogue_notes.py")
    return text


def field_rows(model: type[BaseModel], owner: str | None = None, prefix: str = "") -> list[str]:
    rows = ["| field | type | presence | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        wire = info.alias or name
        rows.append(f"| `{prefix}{wire}` | {type_text(info.annotation)}{_bounds(info)} | {presence(info)} | "
                    f"{description(owner or model.__name__, wire if owner else name, info)} |")
    return rows


def nested_models(roots: Iterable[type[BaseModel]]) -> list[type[BaseModel]]:
    """Models used inside the roots' fields, depth first, each once."""
    found: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.append(annotation)
                for info in annotation.model_fields.values():
                    visit(info.annotation)
            return
        for arg in get_args(annotation):
            visit(arg)

    for root in roots:
        for info in root.model_fields.values():
            visit(info.annotation)
    return found


def undocumented() -> list[str]:
    """Every field the catalogue cannot describe (empty when the catalogue is complete)."""
    missing = []
    try:
        render()
    except Undocumented as exc:
        missing.append(str(exc))
    return missing


# --- sections -----------------------------------------------------------------------------------------


def _doc(obj: Any) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _first_line(obj: Any) -> str:
    return _doc(obj).split("\n\n")[0].replace("\n", " ")


def header() -> Iterator[str]:
    yield "# Event catalogue"
    yield ""
    yield (f"<!-- Generated from events_schema by `{REGENERATE}`. Do not edit: a test fails when this "
           "file and the code disagree. -->")
    yield ""
    yield ("Everything on the gpu-recovery Kinesis stream, for subscribers. A record is one JSON object: "
           "either an ECS event exactly as EventBridge delivers it (it has `detail-type`), or an event of ours "
           "in the [envelope](#the-envelope) (it has `type` and `schema_version`). "
           "`events_schema.decode.decode(bytes)` tells them apart and returns a typed event; "
           "`gpu-recovery schema export DIR` writes a JSON Schema per type; `gpu-recovery tail` shows them live.")
    yield ""
    yield "Our types: " + ", ".join(f"[{t.name}](#{t.name.lower()}-v{t.version})" for t in REGISTRY) + "."
    yield ""
    yield "AWS events we consume: " + ", ".join(
        f"[{detail_type}](#{detail_type.lower().replace(' ', '-')})" for detail_type in AWS_EVENTS) + "."
    yield ""


def partition_keys() -> Iterator[str]:
    yield "## Partition keys"
    yield ""
    yield ("Events that one decision needs arrive in order on one shard where possible: a job's tasks share "
           "their ECS `group`, a node's ECS events share its container instance ARN. AWS events get their key "
           "from the EventBridge rule that put them on the stream:")
    yield ""
    yield "| rule | detail-type | also matches | partition key |"
    yield "|---|---|---|---|"
    for rule in ingest_rules(EXAMPLE_CLUSTER):
        pattern = rule.event_pattern
        extra = {f"detail.{k}": v for k, v in pattern["detail"].items() if k != "clusterArn"}
        extra |= {k: v for k, v in pattern.items() if k in ("account", "region")}
        matches = ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in extra.items()) or "-"
        yield (f"| `{rule.name}` | {pattern['detail-type'][0]} | {matches} | `{rule.partition_key_path}` |")
    yield ""
    yield ("ECS rules match `source: aws.ecs` and the cluster ARN exactly; a task without a `group` is keyed by "
           "its ARN, so that every rule's key is present in every event it takes. The AWS Health and EC2 rules "
           "match the cluster's account (and region) exactly: no pattern can name the cluster's instances, "
           "which change, so these events cover every instance of the account and the recovery ignores the "
           f"ones it does not know. Our events: {_first_line(partition_key_for)} That is `subject.node`, else "
           "`subject.job`, else `subject.task`, else `event_id`.")
    yield ""


def bounds_section() -> Iterator[str]:
    b = bounds
    yield "## Bounds"
    yield ""
    yield ("`decode` refuses, as `invalid` naming the field (or `not_json`), every record outside these bounds, "
           "so nothing past it can overflow, recurse or fail a DynamoDB key:")
    yield ""
    yield f"- a record: at most {b.MAX_RECORD_BYTES:,} bytes (Kinesis's limit), UTF-8 without lone surrogates;"
    yield f"- nesting: at most {b.MAX_DEPTH} levels;"
    yield (f"- times: from {b.TIME_MIN.date()} to before {b.TIME_MAX.date()} UTC, compared in UTC whatever "
           "their offset (one without a zone is UTC); AWS Health's RFC 1123 times too;")
    yield (f"- integers the models declare: within +-10^{b.NUMBER_DIGITS} (DynamoDB's Number), versions >= 0;")
    yield (f"- identifiers (ARNs, ids): 1 to {b.MAX_ID_BYTES:,} ASCII characters or 1 to 256 of any (a DynamoDB "
           f"key holds {b.MAX_ID_BYTES:,} bytes); an ECS `group`: 1 to {b.MAX_GROUP_CHARS} characters (ECS's own "
           "limit);")
    yield ("- what is kept to act on later (a task's `overrides`, a node's `healthChecks`), unknown fields "
           f"included: numbers within +-10^{b.NUMBER_DIGITS}, never NaN or Infinity.")
    yield ""
    yield "Other unknown fields are kept as AWS sent them; an AWS event's record bytes are kept verbatim."
    yield ""


def envelope() -> Iterator[str]:
    yield "## The envelope"
    yield ""
    yield ("Every event of ours travels in this envelope; `data` holds the payload of its `type`. Unknown "
           "fields are kept, here and in every payload.")
    yield ""
    yield from field_rows(Envelope)
    yield ""
    yield f'<a id="{anchor(Subject)}"></a>'
    yield ""
    yield "### Subject"
    yield ""
    yield from field_rows(Subject)
    yield ""
    yield "Example (its partition key is `subject.node`):"
    yield ""
    yield "```json"
    yield _first_example()
    yield "```"
    yield ""


def _first_example() -> str:
    node = "arn:aws:ecs:us-west-2:123456789012:container-instance/gpu-training/4f6a0c2e"
    data = NodeStateChanged(node_arn=node, state="REBOOTING", reason="XID 48 (double-bit ECC error): reboot",
                            incident_id="inc-4f6a0c2e-20261128T095812Z", ec2_instance_id="i-0a1b2c3d4e5f60718")
    envelope = make_envelope(
        data, event_id="0f9a7c52-3c1e-5b8e-9d41-6a1f3e2b7c90", time=datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
        source="gpu-recovery/recovery", subject=Subject(node=node, incident=data.incident_id),
        causation_id="5b0e2d1c-8f3a-5e6b-a7c9-1d2e3f4a5b6c",
    )
    return json.dumps(envelope.model_dump(mode="json"), indent=2)


def versioning() -> Iterator[str]:
    yield "## Versioning policy"
    yield ""
    yield ("- **Add optional fields freely** (with a default). Old readers keep and ignore them; new readers "
           "read old records with the default. No version change.")
    yield ("- **Anything else bumps `VERSION` and registers an upcaster**: removing or renaming a field, changing "
           "its type or meaning, making an optional field required, narrowing its values. The upcaster turns a "
           "version-k payload into a version-(k+1) payload and is registered in `events_schema.events.REGISTRY`. "
           "Readers chain upcasters, so a record written years ago (the S3 archive keeps them) reads as "
           "today's model.")
    yield ("- A record with a version newer than the reader knows is not guessed at: the consumers park it "
           "(`RecordParked`) and count it.")
    yield ("- The envelope only ever gains optional fields. AWS events are read as AWS sends them: we declare "
           "the fields we read and keep the rest.")
    yield ""


def our_type(event_type: EventType) -> Iterator[str]:
    model = event_type.model
    yield f"### {event_type.name} (v{event_type.version})"
    yield ""
    doc = _doc(model)
    if doc:
        yield doc.replace("\n", " ")
        yield ""
    writer = WRITTEN_BY.get(event_type.name)
    if writer:
        yield f"Written by {writer}."
        yield ""
    yield "Versions: " + _history(event_type)
    yield ""
    yield from field_rows(model)
    yield ""


def _history(event_type: EventType) -> str:
    if event_type.version == 1:
        return "v1 (current; no earlier versions)."
    steps = [f"v{k} -> v{k + 1}: {_first_line(fn)}" if (fn := event_type.upcasters.get(k)) else
             f"v{k} -> v{k + 1}: no upcaster (v{k} records cannot be read)"
             for k in range(1, event_type.version)]
    return f"v{event_type.version} (current). Upcasts: " + "; ".join(steps)


def our_types() -> Iterator[str]:
    yield "## Our event types"
    yield ""
    models = []
    for event_type in REGISTRY:
        yield from our_type(event_type)
        models.append(event_type.model)
    yield "### Types used inside our events"
    yield ""
    for model in nested_models(models):
        yield f'<a id="{anchor(model)}"></a>'
        yield ""
        yield f"#### {model.__name__}"
        yield ""
        if model.__doc__ and model.__doc__ != BaseModel.__doc__:
            yield _doc(model).replace("\n", " ")
            yield ""
        yield from field_rows(model)
        yield ""


def aws_events() -> Iterator[str]:
    yield "## AWS events we consume"
    yield ""
    yield ("AWS events as EventBridge delivers them: ECS (source `aws.ecs`), AWS Health scheduled changes for "
           "EC2 (`aws.health`) and EC2 instance state changes (`aws.ec2`). Listed are the fields we read; "
           "everything else AWS sends is kept as is. Field names are AWS's.")
    yield ""
    rules = ingest_rules(EXAMPLE_CLUSTER)
    details = []
    for detail_type, (event_model, detail_model) in AWS_EVENTS.items():
        yield f"### {detail_type}"
        yield ""
        feeding = [f"`{r.name}` (key `{r.partition_key_path}`)" for r in rules
                   if r.event_pattern["detail-type"] == [detail_type]]
        yield f"Model `events_schema.aws.{event_model.__name__}`; put on the stream by rule {', '.join(feeding)}."
        yield ""
        yield from field_rows(event_model, owner="AwsEnvelope")
        yield from field_rows(detail_model, prefix="detail.")[2:]
        yield ""
        details.append(detail_model)
    yield "### Types used inside the AWS events"
    yield ""
    for model in nested_models(details):
        yield f'<a id="{anchor(model)}"></a>'
        yield ""
        yield f"#### {model.__name__}"
        yield ""
        yield from field_rows(model)
        yield ""


def render() -> str:
    parts = [header(), partition_keys(), bounds_section(), envelope(), versioning(), our_types(), aws_events()]
    lines = [line for part in parts for line in part]
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
