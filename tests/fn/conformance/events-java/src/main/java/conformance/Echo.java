package conformance;

import com.fasterxml.jackson.databind.JsonNode;
import dev.flotilla.fn.Event;
import dev.flotilla.fn.Reply;

/** Echoes each event back and says, in extensions, what the handler saw (the CloudEvents suite). */
public class Echo {
    private static String kind(Object data) {
        if (data == null) return "none";
        if (data instanceof byte[]) return "bytes";
        return data instanceof String ? "text" : "json";
    }

    private static String or(String value, String fallback) {
        return value == null ? fallback : value;
    }

    public Reply handle(Event event) {
        String reply = event.extension("reply");
        if ("none".equals(reply)) return null;
        Object data = event.data();
        return Reply.of("dev.flotilla.echo", "/echo")
                .data(data instanceof JsonNode node ? node : data)
                .dataContentType(or(event.dataContentType(), "application/json"))
                .subject(event.subject())
                .extension("datakind", kind(data))
                .extension("gotid", event.id())
                .extension("gottime", or(event.time(), "none"))
                .extension("gotsubject", or(event.subject(), "none"))
                .extension("gotext", or(event.extension("custom"), "none"))
                .structured("structured".equals(reply));
    }
}
