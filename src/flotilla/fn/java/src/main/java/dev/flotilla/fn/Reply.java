package dev.flotilla.fn;

import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.UUID;

/**
 * A CloudEvent a handler answers with. {@code data} is a byte[], a String or any JSON-able value;
 * {@link #structured(boolean)} sends it in structured content mode instead of binary. Returning the
 * SDK's own {@code io.cloudevents.CloudEvent} works too.
 */
public final class Reply {
    String type;
    String source;
    String id = UUID.randomUUID().toString();
    Object data;
    String dataContentType = "application/json";
    String subject;
    String dataSchema;
    String time = OffsetDateTime.now(ZoneOffset.UTC).toString();
    final Map<String, String> extensions = new LinkedHashMap<>();
    boolean structured;

    private Reply(String type, String source) {
        this.type = type;
        this.source = source;
    }

    public static Reply of(String type, String source) { return new Reply(type, source); }

    public Reply id(String value) { id = value; return this; }
    public Reply data(Object value) { data = value; return this; }
    public Reply dataContentType(String value) { dataContentType = value; return this; }
    public Reply subject(String value) { subject = value; return this; }
    public Reply dataSchema(String value) { dataSchema = value; return this; }
    public Reply time(String value) { time = value; return this; }
    public Reply extension(String name, String value) { extensions.put(name, value); return this; }
    public Reply structured(boolean value) { structured = value; return this; }

    public String type() { return type; }
    public String source() { return source; }
    public Object data() { return data; }
    public String subject() { return subject; }
    public Map<String, String> extensions() { return extensions; }
    public boolean isStructured() { return structured; }
}
