"""Echoes each event back and says, in extensions, what the handler saw (the CloudEvents suite)."""

from flotilla.fn.runtime import CloudEvent


def _kind(data):
    if data is None:
        return "none"
    if isinstance(data, bytes):
        return "bytes"
    return "text" if isinstance(data, str) else "json"


def handle(event: CloudEvent) -> CloudEvent | None:
    if event.extensions.get("reply") == "none":
        return None
    return CloudEvent(
        type="dev.flotilla.echo",
        source="/echo",
        data=event.data,
        datacontenttype=event.datacontenttype or "application/json",
        subject=event.subject,
        extensions={
            "datakind": _kind(event.data),
            "gotid": event.id,
            "gottime": event.time or "none",
            "gotsubject": event.subject or "none",
            "gotext": event.extensions.get("custom", "none"),
        },
        structured=event.extensions.get("reply") == "structured",
    )
