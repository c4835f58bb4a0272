"""A Notice as SNS Publish requests: JSON for programs, text for email and SMS, and a chat card.

Pure: no client, no clock. The caller publishes what ``publish_requests`` returns
(``sns.publish(**request)`` each). docs/notifications.md describes every body and attribute.

- The main topic gets one request with ``MessageStructure=json``: ``default`` is our JSON (the Notice with
  ``type`` and ``schema_version`` like our events; every program-facing subscriber gets it), ``email`` a
  readable text, ``sms`` one short line.
- Amazon Q Developer in chat applications (formerly AWS Chatbot) renders only AWS events and its own
  *custom notification* document, read from the message body of a topic mapped to the channel. Its
  subscription is an HTTPS one: a per-protocol ``https`` key would also replace the JSON of every other
  HTTPS subscriber (webhooks, paging tools). So the chat card goes to its own chat topic, as the body.
- Both carry the message attributes ``kind``, ``severity``, ``cluster`` (String), ``node`` and ``job``
  (String.Array: a grouped notice names many) and ``test``, for subscription filter policies. SNS refuses
  an empty attribute value, so an attribute with nothing to say is left out.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from events_schema.events import NOTICE_SEVERITY, Notice, NotificationSent

# SNS: a subject is under 100 ASCII characters without line breaks; a message with its attributes is at
# most 256 KiB; a message carries at most 10 attributes.
SUBJECT_MAX = 99
MESSAGE_MAX_BYTES = 262_144
ATTRIBUTE_VALUES_MAX = 100  # values of `node` / `job` in a grouped notice (the body lists more)
TEXT_LIST_MAX = 20  # nodes, jobs, incidents listed in an email
CHAT_LIST_MAX = 8  # ... in a chat card
CHAT_DESCRIPTION_MAX = 3000  # a chat card stays a card: the email and the audit have the rest
SMS_MAX = 140
CHAT_VERSION = "1.0"
CHAT_SOURCE = "custom"
PROGRAM = "gpu-recovery"

SEVERITY_EMOJI = {"page": ":rotating_light:", "action_needed": ":warning:", "info": ":information_source:"}
SEVERITY_WORDS = {"page": "PAGE", "action_needed": "action needed", "info": "info"}


if TYPE_CHECKING:  # SNS's MessageAttributeValue, as boto3 takes it (the stubs are a dev dependency)
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef as MessageAttribute
else:
    MessageAttribute = dict


class PublishRequest(TypedDict):
    """The keyword arguments of SNS Publish, as boto3 takes them."""

    TopicArn: str
    Message: str
    MessageAttributes: dict[str, MessageAttribute]
    Subject: NotRequired[str]
    MessageStructure: NotRequired[str]


def notice_of(message: Mapping[str, Any]) -> Notice:
    """The Notice of a Publish action's message; a message without a severity gets its kind's."""
    severity = NOTICE_SEVERITY.get(str(message.get("kind", "")), "action_needed")
    return Notice.model_validate({"severity": severity, **message})


def publish_requests(notice: Notice, *, topic_arn: str, chat_topic_arn: str | None = None,
                     subject: str | None = None) -> list[PublishRequest]:
    """The main topic's request, then the chat topic's when there is one."""
    requests = [main_request(notice, topic_arn=topic_arn, subject=subject)]
    if chat_topic_arn:
        requests.append(chat_request(notice, topic_arn=chat_topic_arn))
    return requests


def main_request(notice: Notice, *, topic_arn: str, subject: str | None = None) -> PublishRequest:
    """default (JSON), email (text) and sms (a line), shrunk to SNS's size limit if a burst is huge."""
    attributes = message_attributes(notice)
    budget = MESSAGE_MAX_BYTES - attributes_size(attributes)
    keep = None
    while True:
        message = json.dumps({"default": json.dumps(default_body(notice, keep=keep), sort_keys=True),
                              "email": email_body(notice), "sms": sms_body(notice)})
        if len(message.encode()) <= budget:
            break
        keep = _smaller(keep, notice)
    return PublishRequest(TopicArn=topic_arn, Subject=subject_line(notice, subject), Message=message,
                          MessageStructure="json", MessageAttributes=attributes)


def chat_request(notice: Notice, *, topic_arn: str) -> PublishRequest:
    """The chat card as the whole body (no MessageStructure: Chatbot reads the body)."""
    return PublishRequest(TopicArn=topic_arn, Message=json.dumps(chat_body(notice)),
                          MessageAttributes=message_attributes(notice))


# --- who and what -----------------------------------------------------------------------------------


def nodes_of(notice: Notice) -> list[str]:
    """Every node the notice names, the single ``node_arn`` first."""
    return _unique([notice.node_arn, *notice.node_arns])


def incidents_of(notice: Notice) -> list[str]:
    return _unique([notice.incident_id, *notice.incident_ids])


def jobs_of(notice: Notice) -> list[str]:
    return _unique(notice.job_ids)


def _unique(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


def kind_words(kind: str) -> str:
    return kind.replace("_", " ") or "notification"


def short_node(arn: str) -> str:
    """The container instance id (the ARN's last part), as people and `audit --node` know it."""
    return arn.rsplit("/", 1)[-1]


def where(notice: Notice) -> str:
    """``node 4f6a0c2e``, ``64 nodes``, ``job llm-70b``, ``3 jobs``, or the cluster."""
    nodes, jobs = nodes_of(notice), jobs_of(notice)
    if len(nodes) == 1:
        return f"node {short_node(nodes[0])[:12]}"
    if nodes:
        return f"{len(nodes):,} nodes"
    if len(jobs) == 1:
        return f"job {jobs[0]}"
    if jobs:
        return f"{len(jobs):,} jobs"
    return f"cluster {notice.cluster}" if notice.cluster else "the fleet"


def title_of(notice: Notice) -> str:
    """The notice's own title, or ``Node quarantined: node 4f6a0c2e``."""
    if notice.title:
        return notice.title
    words = kind_words(notice.kind)
    return f"{words[:1].upper()}{words[1:]}: {where(notice)}"


def audit_commands(notice: Notice, *, limit: int = 3) -> list[str]:
    """`gpu-recovery audit` for the incidents, else the nodes, and the jobs (a few of each)."""
    commands = [f"gpu-recovery audit --incident {incident}" for incident in incidents_of(notice)[:limit]]
    if not commands:
        commands = [f"gpu-recovery audit --node {short_node(node)}" for node in nodes_of(notice)[:limit]]
    commands += [f"gpu-recovery audit --job {job}" for job in jobs_of(notice)[:limit]]
    return commands


# --- subject and attributes -------------------------------------------------------------------------


def subject_line(notice: Notice, subject: str | None = None) -> str:
    """ASCII, one line, under 100 characters; a test says TEST first."""
    text = subject or f"[{PROGRAM}] {title_of(notice)} ({notice.cluster})"
    return _fit(_ascii_line(marked(notice, text)), SUBJECT_MAX)


def marked(notice: Notice, text: str) -> str:
    """A test says TEST up front, once."""
    return f"TEST {text}" if notice.test and "TEST" not in text else text


def _ascii_line(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    printable = "".join(char if char.isprintable() else " " for char in folded)
    return " ".join(printable.split()) or PROGRAM


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def message_attributes(notice: Notice) -> dict[str, MessageAttribute]:
    """kind, severity, cluster; node and job as String.Array; test only on a test. Empty ones left out."""
    attributes: dict[str, MessageAttribute] = {}
    for name, value in (("kind", notice.kind), ("severity", notice.severity), ("cluster", notice.cluster)):
        if value:
            attributes[name] = MessageAttribute(DataType="String", StringValue=value)
    for name, values in (("node", nodes_of(notice)), ("job", jobs_of(notice))):
        if values:
            attributes[name] = MessageAttribute(DataType="String.Array",
                                                StringValue=json.dumps(values[:ATTRIBUTE_VALUES_MAX]))
    if notice.test:
        attributes["test"] = MessageAttribute(DataType="String", StringValue="true")
    return attributes


def attributes_size(attributes: dict[str, MessageAttribute]) -> int:
    """What SNS counts against the message size: each attribute's name, type and value."""
    return sum(len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
               for name, value in attributes.items())


# --- default: our JSON ------------------------------------------------------------------------------

_LISTS = ("node_arns", "incident_ids", "job_ids", "done")


def default_body(notice: Notice, *, keep: int | None = None) -> dict[str, Any]:
    """The Notice's fields, unchanged, with ``type`` and ``schema_version`` like our events.

    ``keep`` shortens the lists of a burst too big for one SNS message; ``omitted`` then says how many of
    each were left out (the NotificationSent event on the stream has them all).
    """
    body: dict[str, Any] = {"type": NotificationSent.TYPE, "schema_version": NotificationSent.VERSION,
                            **notice.model_dump(mode="json")}
    if keep is None:
        return body
    omitted = {name: len(body[name]) - keep for name in _LISTS if len(body[name]) > keep}
    for name in omitted:
        body[name] = body[name][:keep]
    body["omitted"] = omitted
    return body


def _smaller(keep: int | None, notice: Notice) -> int:
    longest = max(len(getattr(notice, name)) for name in _LISTS)
    if keep == 0 or longest == 0:
        raise ValueError("the notice does not fit in one SNS message even without its lists")
    return (longest if keep is None else keep) // 2


# --- email: text for people -------------------------------------------------------------------------


def email_body(notice: Notice) -> str:
    """What was seen, what was done, what to do next, who is concerned, and the audit to run."""
    sections = [
        _test_banner(notice),
        [title_of(notice), notice.summary],
        ["What was seen", *_indent(_seen_lines(notice))],
        ["What was done", *_indent(_done_lines(notice))],
        ["What to do next", *_indent([notice.next_step or "Nothing: this is for your information."])],
        ["Concerned", *_indent(_concerned_lines(notice))],
        ["The whole story", *_indent(audit_commands(notice) or ["gpu-recovery audit --help"])],
        [f"-- {PROGRAM}: filter this topic by kind, severity, cluster, node, job (docs/notifications.md)"],
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines)


def _test_banner(notice: Notice) -> list[str]:
    if not notice.test:
        return []
    return ["TEST NOTIFICATION from `gpu-recovery notify test`: nothing happened, no action needed.",
            f"It shows where `{notice.kind}` notifications reach you."]


def _indent(lines: list[str]) -> list[str]:
    return [f"  {line}" for line in lines]


def _seen_lines(notice: Notice) -> list[str]:
    seen = notice.seen
    lines = []
    if seen.xids:
        lines.append(f"XIDs: {', '.join(str(xid) for xid in seen.xids)}")
    if seen.verdict:
        lines.append(f"DCGM verdict: {seen.verdict}")
    if seen.reason:
        lines.append(seen.reason)
    return lines or ["-"]


def _done_lines(notice: Notice) -> list[str]:
    shown = [f"- {step}" for step in notice.done[:TEXT_LIST_MAX]]
    more = len(notice.done) - len(shown)
    return (shown + ([f"... and {more:,} more steps"] if more > 0 else [])) or ["nothing yet"]


def _concerned_lines(notice: Notice) -> list[str]:
    lines = [f"cluster:   {notice.cluster or '-'}", f"severity:  {notice.severity}, kind {notice.kind}"]
    if notice.at is not None:
        lines.append(f"at:        {notice.at.isoformat()}")
    nodes = nodes_of(notice)
    for label, values in (("node", nodes if len(nodes) == 1 else [short_node(node) for node in nodes]),
                          ("job", jobs_of(notice)), ("incident", incidents_of(notice))):
        lines += _listing(label, values, TEXT_LIST_MAX)
    if notice.instance_id:
        lines.append(f"instance:  {notice.instance_id}")
    return lines


def _listing(label: str, values: list[str], limit: int) -> list[str]:
    """One value on its line; several as a counted list (container instance ids for nodes)."""
    if len(values) <= 1:
        return [f"{label + ':':<10} {value}" for value in values]
    head = [f"{label}s ({len(values):,}):"] + [f"  {value}" for value in values[:limit]]
    more = len(values) - limit
    return head + ([f"  ... and {more:,} more (the audit lists them all)"] if more > 0 else [])


def sms_body(notice: Notice) -> str:
    text = marked(notice, f"{SEVERITY_WORDS[notice.severity]}: {title_of(notice)} ({notice.cluster}). "
                          f"{notice.next_step}")
    return _fit(" ".join(text.split()), SMS_MAX)


# --- chat: Amazon Q Developer in chat applications' custom notification ------------------------------


def chat_body(notice: Notice) -> dict[str, Any]:
    """The custom notification document (version 1.0, source custom), in the chat's own markdown."""
    content: dict[str, Any] = {
        "textType": "client-markdown",
        "title": _chat_title(notice),
        "description": _fit(_chat_description(notice), CHAT_DESCRIPTION_MAX),
        "nextSteps": _chat_next_steps(notice),
        "keywords": _unique([notice.kind, notice.severity, notice.cluster, "test" if notice.test else None]),
    }
    return {"version": CHAT_VERSION, "source": CHAT_SOURCE, "id": _chat_id(notice), "content": content,
            "metadata": _chat_metadata(notice)}


def _chat_title(notice: Notice) -> str:
    emoji = ":test_tube:" if notice.test else SEVERITY_EMOJI[notice.severity]
    return f"{emoji} {marked(notice, title_of(notice))} ({notice.cluster})"


def _chat_description(notice: Notice) -> str:
    parts = [notice.summary]
    if notice.test:
        parts.insert(0, "*Test notification* from `gpu-recovery notify test`: nothing happened, no action needed.")
    seen = [line for line in _seen_lines(notice) if line != "-"]
    if seen:
        parts.append("*Seen:* " + "; ".join(seen))
    for label, values in (("Nodes", [short_node(n) for n in nodes_of(notice)]), ("Jobs", jobs_of(notice)),
                          ("Incidents", incidents_of(notice))):
        if values:
            parts.append(_chat_listing(label, values))
    return "\n".join(parts)


def _chat_listing(label: str, values: list[str]) -> str:
    shown = ", ".join(f"`{value}`" for value in values[:CHAT_LIST_MAX])
    more = len(values) - CHAT_LIST_MAX
    return f"*{label} ({len(values):,}):* {shown}" + (f" and {more:,} more" if more > 0 else "")


def _chat_next_steps(notice: Notice) -> list[str]:
    steps = [notice.next_step] if notice.next_step else []
    return steps + [f"`{command}`" for command in audit_commands(notice)]


def _chat_metadata(notice: Notice) -> dict[str, Any]:
    incidents = incidents_of(notice)
    metadata: dict[str, Any] = {
        "summary": _fit(title_of(notice), 200),
        "eventType": notice.kind,
        "relatedResources": _unique([notice.instance_id, *nodes_of(notice)])[:CHAT_LIST_MAX],
        "additionalContext": {"kind": notice.kind, "severity": notice.severity, "cluster": notice.cluster,
                              **({"incident": incidents[0]} if incidents else {})},
    }
    if len(incidents) == 1:
        metadata["threadId"] = incidents[0]  # one thread per incident in the channel
    return metadata


def _chat_id(notice: Notice) -> str:
    """Stable for the same notice, so a repeated publish is recognisably the same notification."""
    digest = hashlib.sha256(json.dumps(notice.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    return f"{PROGRAM}-{digest[:32]}"


def sibling_topic_arn(topic_arn: str, name: str | None) -> str | None:
    """The ARN of topic ``name`` beside ``topic_arn`` (same partition, region, account); None without a name."""
    return f"{topic_arn.rsplit(':', 1)[0]}:{name}" if name else None
