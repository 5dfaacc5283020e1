package dev.flotilla.fn;

import io.cloudevents.CloudEvent;
import java.util.Map;

/**
 * A received CloudEvent as a handler sees it: the SDK's event plus its data typed by
 * {@code datacontenttype} (JSON parsed to a JsonNode, text/* a String, anything else byte[]),
 * percent-decoded attributes, and {@code time} as the sender wrote it.
 */
public final class Event {
    private final CloudEvent cloudEvent;
    private final Object data;
    private final String time;
    private final Map<String, String> extensions;

    Event(CloudEvent cloudEvent, Object data, String time, Map<String, String> extensions) {
        this.cloudEvent = cloudEvent;
        this.data = data;
        this.time = time;
        this.extensions = Map.copyOf(extensions);
    }

    /** An event for a function's own unit tests. */
    public static Event of(CloudEvent cloudEvent, Object data) {
        return new Event(cloudEvent, data,
                cloudEvent.getTime() == null ? null : cloudEvent.getTime().toString(), Map.of());
    }

    /** The CloudEvents SDK's own event. */
    public CloudEvent cloudEvent() { return cloudEvent; }
    public String id() { return cloudEvent.getId(); }
    public String type() { return cloudEvent.getType(); }
    public String source() { return cloudEvent.getSource().toString(); }
    public String subject() { return cloudEvent.getSubject(); }
    public String dataContentType() { return cloudEvent.getDataContentType(); }
    /** {@code time} as sent (RFC 3339), or null. */
    public String time() { return time; }
    /** Extension attributes as strings. */
    public Map<String, String> extensions() { return extensions; }
    public String extension(String name) { return extensions.get(name); }
    /** JsonNode, String, byte[] or null. */
    public Object data() { return data; }
}
