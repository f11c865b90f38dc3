import { CityApiError } from "@daarion/city-client";
import { useEffect, useState, type DependencyList } from "react";

/** Load now and every `everyMs` while shown; keeps the last good data on errors. */
export function usePolling<T>(load: () => Promise<T>, everyMs: number, deps: DependencyList) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let cancelled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        const value = await load();
        if (!cancelled) {
          setData(value);
          setError(null);
        }
      } catch (e) {
        if (!cancelled) setError(e);
      }
      if (!cancelled) timer = setTimeout(run, document.hidden ? everyMs * 3 : everyMs);
    };
    void run();
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return { data, error };
}

/** A gateway error in words a person can act on. */
export function describeError(error: unknown): string {
  if (!(error instanceof CityApiError)) return error instanceof Error ? error.message : String(error);
  switch (error.status) {
    case 0:
      return "The city cannot be reached. Check your connection; we keep trying.";
    case 401:
      return "Your session has expired. Open the app again with a fresh link.";
    case 429: {
      const wait = error.retryAfterMs ? ` Try again in ${Math.ceil(error.retryAfterMs / 1000)} s.` : "";
      return `Too many requests.${wait}`;
    }
    case 502:
      return `The agent service failed (${error.code}): ${error.message}`;
    case 503:
      return `The service is unavailable right now (${error.code}). Try again shortly.`;
    case 504:
      return "The agent took too long to answer. Your message is kept; try again.";
    default:
      return error.message;
  }
}

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p role="alert" className="error">
      {describeError(error)}
    </p>
  );
}
