package conformance;

import dev.flotilla.fn.Request;
import dev.flotilla.fn.Response;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/** Slow, hostile and well-behaved paths for the lifecycle suite (tests/fn/test_lifecycle.py). */
public class Lifecycle {
    public Object handle(Request request) throws InterruptedException {
        switch (request.path()) {
            case "/slow":
                Thread.sleep((long) (Double.parseDouble(request.query().getOrDefault("s", "1")) * 1000));
                return "slept";
            case "/json":
                return Map.of("got", request.json());
            case "/bad-status":
                return new Response("x", 1000);
            case "/bad-header":
                return new Response("x", 200, Map.of("x-bad", "a\r\nb"));
            default:
                return "ok";
        }
    }

    public boolean liveness() {
        return true;
    }

    public boolean readiness() {
        return true;
    }

    public void shutdown() throws IOException {
        String marker = System.getenv("LIFECYCLE_MARKER");
        if (marker != null) Files.writeString(Path.of(marker), "stopped");
    }
}
